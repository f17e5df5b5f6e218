"""Shared helpers for windowed-aggregation tests on the TopologyTestDriver."""

from __future__ import annotations

from typing import Any

from kstream import StreamBuilder
from kstream.testing import TopologyTestDriver
from serdes import Int64Serde, JsonSerde, StringSerde, WindowedSerde


def count_driver(windows: Any, emit: str = "update", late: str = "drop",
                 backend: str = "memory", retention: int | None = None,
                 **driver_kw: Any) -> TopologyTestDriver:
    """in (str key, JSON value) -> windowed count "c" -> out (windowed key, int64)."""
    b = StreamBuilder()
    (b.stream("in", key_serde=StringSerde(), value_serde=JsonSerde())
     .group_by_key()
     .windowed_by(windows)
     .count("c", emit=emit, late=late, backend=backend, retention=retention)
     .to_stream()
     .to("out", value_serde=Int64Serde()))
    return TopologyTestDriver(b, **driver_kw)


def pipe(driver: TopologyTestDriver, records: list[tuple[str, int]]) -> None:
    topic = driver.input_topic("in", StringSerde(), JsonSerde())
    for key, ts in records:
        topic.pipe(key, {"k": key, "ts": ts}, ts)


def outputs(driver: TopologyTestDriver) -> list[tuple[str, int, int, int | None, int]]:
    """(key, start, end, value, timestamp) of everything written to "out", in order."""
    out = driver.output_topic("out", WindowedSerde(StringSerde()), Int64Serde())
    return [(r.key.key, r.key.start, r.key.end, r.value, r.timestamp)
            for r in out.read_records_to_list()]


def late_count(driver: TopologyTestDriver) -> int:
    return sum(task.dropped_late for task in driver._tasks.values())
