"""Table-table joins in the driver: inner, left and outer against a brute-force model on
random updates and tombstones of both tables (also through filtered/mapped views and with
the result materialized), and the one place they differ from Kafka Streams."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joins_helpers import KINDS, LEFT, RIGHT, frozen, joined, table_join_model

from kstream import StreamBuilder, TopologyError
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde

updates = st.lists(st.tuples(st.sampled_from([LEFT, RIGHT]), st.sampled_from("abcd"),
                             st.one_of(st.none(), st.integers(0, 9))),
                   min_size=1, max_size=40)


def build(kind: str, materialized: bool, views: bool) -> StreamBuilder:
    b = StreamBuilder()
    left = b.table("lt", StringSerde(), JsonSerde(), name="left-table", backend="memory")
    right = b.table("rt", StringSerde(), JsonSerde(), name="right-table", backend="memory")
    if views:
        left = left.map_values(lambda v: v * 10)
        right = right.filter(lambda _k, v: v % 3 != 0)
    method = {"inner": left.join, "left": left.left_join, "outer": left.outer_join}[kind]
    result = method(right, joined, "j", materialized="joined" if materialized else None)
    result.to_stream().to("out", StringSerde(), JsonSerde())
    return b


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ups=updates, materialized=st.booleans(), views=st.booleans())
def test_table_join_matches_the_model(kind: str, ups: list[tuple[int, str, Any]],
                                      materialized: bool, views: bool) -> None:
    # Values are made unique per update so every output names the updates it came from.
    ups = [(side, key, None if v is None else v + 100 * i) for i, (side, key, v)
           in enumerate(ups)]
    want, final = table_join_model(
        ups, kind, left_view=(lambda v: v * 10) if views else None,
        right_view=(lambda v: v if v % 3 != 0 else None) if views else None)
    with TopologyTestDriver(build(kind, materialized, views)) as driver:
        inputs = {LEFT: driver.input_topic("lt", StringSerde(), JsonSerde()),
                  RIGHT: driver.input_topic("rt", StringSerde(), JsonSerde())}
        out = driver.output_topic("out", StringSerde(), JsonSerde())
        for i, (side, key, value) in enumerate(ups):
            inputs[side].pipe(key, value, 1000 + i)
            got = out.read_key_values_to_list()
            assert got == ([] if want[i] is None else [want[i]]), f"after update {i}"
        if materialized:
            stored = {k: frozen(v) for k, v in driver.get_store("joined").all()}
            assert stored == {k: frozen(v) for k, v in final.items()}


def test_tombstones_of_absent_keys_forward_nothing() -> None:
    with TopologyTestDriver(build("outer", False, False)) as driver:
        driver.input_topic("lt", StringSerde(), JsonSerde()).pipe("a", None)
        driver.input_topic("rt", StringSerde(), JsonSerde()).pipe("a", None)
        assert driver.output_topic("out", StringSerde(), JsonSerde()).is_empty()


def test_result_carries_the_larger_of_both_sides_times() -> None:
    """As Kafka Streams (KIP-258): a table-table join result is stamped with the larger of
    the update's time and the other side's value's time (table stores keep timestamps)."""
    with TopologyTestDriver(build("inner", False, False)) as driver:
        driver.input_topic("lt", StringSerde(), JsonSerde()).pipe("a", 1, timestamp=500)
        driver.input_topic("rt", StringSerde(), JsonSerde()).pipe("a", 2, timestamp=100)
        driver.input_topic("lt", StringSerde(), JsonSerde()).pipe("a", 3, timestamp=50)
        records = driver.output_topic("out", StringSerde(), JsonSerde()).read_records_to_list()
    assert [(r.value, r.timestamp) for r in records] == [([1, 2], 500), ([3, 2], 100)]


def test_left_join_result_without_a_right_value_carries_the_update_s_time() -> None:
    with TopologyTestDriver(build("left", True, False)) as driver:
        driver.input_topic("lt", StringSerde(), JsonSerde()).pipe("a", 1, timestamp=500)
        driver.input_topic("rt", StringSerde(), JsonSerde()).pipe("a", 2, timestamp=700)
        driver.input_topic("rt", StringSerde(), JsonSerde()).pipe("a", None, timestamp=600)
        records = driver.output_topic("out", StringSerde(), JsonSerde()).read_records_to_list()
    # The right side's delete at 600 meets the left value (500): max is 600.
    assert [(r.value, r.timestamp) for r in records] == [([1, None], 500), ([1, 2], 700),
                                                         ([1, None], 600)]


def test_joined_tables_must_be_lookups() -> None:
    from kstream.windows import TumblingWindows

    b = StreamBuilder()
    table = b.table("t", name="t")
    windowed = b.stream("s").group_by_key().windowed_by(TumblingWindows(10)).count("w")
    with pytest.raises(TopologyError, match="windowed"):
        table.join(windowed, joined)


def test_join_result_can_be_joined_again_without_materializing() -> None:
    b = StreamBuilder()
    t1 = b.table("t1", StringSerde(), JsonSerde(), name="t1", backend="memory")
    t2 = b.table("t2", StringSerde(), JsonSerde(), name="t2", backend="memory")
    t3 = b.table("t3", StringSerde(), JsonSerde(), name="t3", backend="memory")
    t1.join(t2, joined).join(t3, joined).to_stream().to("out", StringSerde(), JsonSerde())
    with TopologyTestDriver(b) as driver:
        for topic, value, ts in (("t1", 1, 10), ("t2", 2, 900), ("t3", 3, 20), ("t2", 4, 30)):
            driver.input_topic(topic, StringSerde(), JsonSerde()).pipe("k", value, timestamp=ts)
        out = driver.output_topic("out", StringSerde(), JsonSerde()).read_records_to_list()
    # Stamped with the largest time of the three current values (the view's too).
    assert [(r.key, r.value, r.timestamp) for r in out] == [("k", [[1, 2], 3], 900),
                                                             ("k", [[1, 4], 3], 30)]
