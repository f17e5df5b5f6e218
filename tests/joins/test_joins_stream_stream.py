"""Windowed stream-stream joins in the driver: inner, left and outer against a brute-force
model on random out-of-order input (late records, duplicates, key changes), and the cases
where kstream deliberately differs from Kafka Streams."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joins_helpers import (
    KINDS,
    LEFT,
    RIGHT,
    Event,
    run_stream_join,
    stream_join_builder,
    stream_join_model,
)

from kstream import JoinWindows, StreamBuilder, TopologyError
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], JoinWindows]:
    windows = JoinWindows(draw(st.sampled_from([0, 2, 7])), draw(st.sampled_from([0, 3, 10])),
                          draw(st.sampled_from([0, 4, 15, 60])))
    raw = draw(st.lists(st.tuples(st.sampled_from([LEFT, RIGHT]), st.sampled_from("abc"),
                                  st.integers(0, 25), st.integers(-20, 3)),
                        min_size=1, max_size=30))
    events = []
    clock = 0
    for i, (side, key, step, jitter) in enumerate(raw):
        clock += step if step < 12 else 0  # runs of equal times make duplicates
        events.append(Event(side, key, i, max(0, clock + jitter)))
    return events, windows


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), rekey=st.sampled_from([(), (LEFT,), (LEFT, RIGHT)]))
def test_stream_join_matches_the_model(kind: str, scenario: tuple[list[Event], JoinWindows],
                                       rekey: tuple[int, ...]) -> None:
    events, windows = scenario
    want, late = stream_join_model(events, kind, windows)
    builder = stream_join_builder(kind, windows, rekey_left=LEFT in rekey,
                                  rekey_right=RIGHT in rekey)
    with TopologyTestDriver(builder) as driver:
        got = run_stream_join(driver, events, set(rekey))
        assert driver.late_records == late
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"after input {i} ({events[i]}): got {dict(g)}, want {dict(w)}"


def test_rocksdb_stores_give_the_same_results() -> None:
    events = [Event(LEFT, "a", 0, 10), Event(RIGHT, "a", 1, 12), Event(RIGHT, "a", 2, 12),
              Event(LEFT, "b", 3, 30), Event(LEFT, "a", 4, 11), Event(RIGHT, "c", 5, 80)]
    windows = JoinWindows.of(5, grace=10)
    want, _ = stream_join_model(events, "outer", windows)
    with TopologyTestDriver(stream_join_builder("outer", windows, backend="rocksdb")) as driver:
        assert run_stream_join(driver, events, set()) == want


def test_duplicates_of_key_and_time_are_all_kept() -> None:
    events = [Event(LEFT, "a", 0, 5), Event(LEFT, "a", 1, 5), Event(LEFT, "a", 2, 5),
              Event(RIGHT, "a", 3, 5)]
    with TopologyTestDriver(stream_join_builder("inner", JoinWindows.of(0))) as driver:
        got = run_stream_join(driver, events, set())
    assert got[3] == Counter({("a", (0, 3), 5): 1, ("a", (1, 3), 5): 1, ("a", (2, 3), 5): 1})


def test_unmatched_record_waits_for_its_window_to_close() -> None:
    """Kafka Streams emits a left record unmatched at once when its window end is already
    behind stream time (but within grace), and then again joined if a partner arrives within
    grace: (x, None) followed by (x, y). kstream holds it until window end + grace."""
    windows = JoinWindows.of(10, grace=30)
    events = [Event(LEFT, "k", 0, 25),   # stream time 25
              Event(LEFT, "x", 1, 10),   # window [0, 20] already ends before 25: KS emits now
              Event(RIGHT, "x", 2, 15),  # not late (15 >= 25 - 30): joins x
              Event(LEFT, "k", 3, 100)]  # closes everything
    with TopologyTestDriver(stream_join_builder("left", windows)) as driver:
        got = run_stream_join(driver, events, set())
    assert got[1] == Counter()
    assert got[2] == Counter({("x", (1, 2), 15): 1})
    assert got[3] == Counter({("k", (0, None), 25): 1})  # x never appears unmatched


def test_late_record_is_dropped_even_if_its_window_is_open() -> None:
    """Kafka Streams would still join a record older than stream time - grace with what is
    buffered; kstream drops it (counted), so an unmatched result is always final."""
    windows = JoinWindows.of(10, grace=0)
    events = [Event(LEFT, "x", 0, 10), Event(RIGHT, "x", 1, 5), Event(LEFT, "z", 2, 30)]
    with TopologyTestDriver(stream_join_builder("left", windows)) as driver:
        got = run_stream_join(driver, events, set())
        assert driver.late_records == 1
    assert got[1] == Counter()
    assert got[2] == Counter({("x", (0, None), 10): 1})


def test_late_records_can_be_dead_lettered() -> None:
    windows = JoinWindows.of(5)
    builder = stream_join_builder("inner", windows, late="dead_letter")
    with TopologyTestDriver(builder, application_id="jl") as driver:
        run_stream_join(driver, [Event(LEFT, "a", 0, 50), Event(RIGHT, "a", 1, 10)], set())
        dlq = driver.output_topic("jl-dlq").read_records_to_list()
    assert [(r.key, r.timestamp) for r in dlq] == [(b"a", 10)]
    assert dict(dlq[0].headers)["kstream.error.stage"] == b"late"


def test_null_keys_and_values() -> None:
    """As Kafka Streams: a null value joins nothing; a null-key record of an emitting side
    of a left/outer join is emitted unmatched at once (it can never match)."""
    b = StreamBuilder()
    left = b.stream("left", StringSerde(), JsonSerde())
    right = b.stream("right", StringSerde(), JsonSerde())
    left.left_join(right, lambda lv, rv: [lv, rv], JoinWindows.of(5), "j").to(
        "out", StringSerde(), JsonSerde())
    with TopologyTestDriver(b) as driver:
        li, ri = (driver.input_topic(t, StringSerde(), JsonSerde()) for t in ("left", "right"))
        out = driver.output_topic("out", StringSerde(), JsonSerde())
        li.pipe(None, 1, 10)
        assert out.read_key_values_to_list() == [(None, [1, None])]
        ri.pipe(None, 2, 10)
        li.pipe("a", None, 10)
        ri.pipe("a", None, 10)
        li.pipe("a", 3, 10)
        assert out.read_key_values_to_list() == []


def test_state_is_bounded_by_retention() -> None:
    windows = JoinWindows.of(10, grace=5)
    with TopologyTestDriver(stream_join_builder("inner", windows)) as driver:
        inputs = [driver.input_topic(t, StringSerde(), JsonSerde()) for t in ("left", "right")]
        for i in range(400):
            inputs[i % 2].pipe(f"k{i % 7}", {"id": i, "k": f"k{i % 7}"}, i * 3)
        stored = sum(1 for _ in driver.get_store("j-this-join-store").all())
        assert stored < 30  # retention 25 ms of 1200 ms: a handful of segments' records


def test_join_needs_windows_and_a_name() -> None:
    b = StreamBuilder()
    left, right = b.stream("l"), b.stream("r")
    with pytest.raises(TopologyError, match="JoinWindows"):
        left.join(right, lambda a, c: a)
    with pytest.raises(TopologyError, match="name"):
        left.join(right, lambda a, c: a, JoinWindows.of(5))
    with pytest.raises(TopologyError, match="late"):
        left.join(right, lambda a, c: a, JoinWindows.of(5), "j", late="keep")


def test_join_windows_validate() -> None:
    assert JoinWindows.of(5, grace=2) == JoinWindows(5, 5, 2)
    assert JoinWindows(3, 4, 5).retention == 12
    with pytest.raises(ValueError, match="before"):
        JoinWindows(-1, 0)
