"""Window definitions, durations and the field timestamp extractor."""

from __future__ import annotations

import datetime as dt

import pytest

from kstream.record import Record
from kstream.windows import (
    HoppingWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    field_timestamp,
)


def test_durations_accept_ms_and_timedelta() -> None:
    w = TumblingWindows(dt.timedelta(minutes=1), grace=dt.timedelta(seconds=5))
    assert (w.size, w.grace, w.retention) == (60_000, 5_000, 65_000)
    assert HoppingWindows(10, 5).advance == 5
    assert SlidingWindows(dt.timedelta(seconds=1)).max_difference == 1000
    assert SessionWindows(30, grace=7).inactivity_gap == 30


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_bad_sizes_are_rejected(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        TumblingWindows(bad)  # type: ignore[arg-type]


def test_hopping_advance_cannot_exceed_size() -> None:
    with pytest.raises(ValueError, match="advance"):
        HoppingWindows(10, 11)


def test_window_starts_like_kafka_time_windows() -> None:
    assert TumblingWindows(10).window_starts(25) == [20]
    assert HoppingWindows(10, 5).window_starts(12) == [5, 10]
    assert HoppingWindows(10, 5).window_starts(3) == [0]
    assert HoppingWindows(10, 3).window_starts(10) == [3, 6, 9]


def _rec(value: object) -> Record:
    return Record("k", value, 1234)


def test_field_timestamp_reads_ints_iso_strings_and_datetimes() -> None:
    ext = field_timestamp("ts")
    assert ext(_rec({"ts": 1_700_000_000_123}), -1) == 1_700_000_000_123
    assert ext(_rec({"ts": "1970-01-01T00:00:01.5Z"}), -1) == 1500
    assert ext(_rec({"ts": "1970-01-01T01:00:00+01:00"}), -1) == 0
    naive = dt.datetime(1970, 1, 1, 0, 0, 2)
    assert ext(_rec({"ts": naive}), -1) == 2000
    assert field_timestamp(lambda v: v[1])(_rec((0, 42)), -1) == 42


@pytest.mark.parametrize("value", [{}, {"ts": None}, {"ts": "yesterday"}, {"ts": True}])
def test_field_timestamp_raises_on_missing_or_bad_time(value: object) -> None:
    with pytest.raises((KeyError, ValueError)):
        field_timestamp("ts")(_rec(value), -1)


def test_bad_timestamp_goes_through_the_error_policy() -> None:
    from kstream import StreamBuilder
    from kstream.testing import TopologyTestDriver
    from serdes import JsonSerde, StringSerde

    b = StreamBuilder()
    (b.stream("in", key_serde=StringSerde(), value_serde=JsonSerde(),
              timestamp_extractor=field_timestamp("ts"))
     .to("out"))
    with TopologyTestDriver(b, error_policy="dead_letter") as driver:
        topic = driver.input_topic("in", StringSerde(), JsonSerde())
        topic.pipe("a", {"ts": 5})
        topic.pipe("a", {"no": 1})
        out = driver.output_topic("out").read_records_to_list()
        assert [r.timestamp for r in out] == [5]
        dlq = driver.output_topic("test-app-dlq").read_records_to_list()
        assert dict(dlq[0].headers)["kstream.error.stage"] == b"timestamp"
