"""Punctuation: stream time moves only with records, wall-clock time only with the clock."""

from __future__ import annotations

from kstream import STREAM_TIME, WALL_CLOCK_TIME, Processor, StreamBuilder
from kstream.processor import ProcessorContext
from kstream.record import Record
from kstream.testing import TopologyTestDriver
from serdes import StringSerde


class Recorder(Processor):
    """Records (kind, time) of every punctuation into a shared list."""

    def __init__(self, calls: list[tuple[str, int]]) -> None:
        self.calls = calls

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        context.schedule(10, STREAM_TIME, lambda t: self.calls.append(("stream", t)))
        context.schedule(100, WALL_CLOCK_TIME, lambda t: self.calls.append(("wall", t)))

    def process(self, record: Record) -> None:
        self.calls.append(("record", record.timestamp))


def _driver(calls: list[tuple[str, int]]) -> TopologyTestDriver:
    b = StreamBuilder()
    b.stream("in", key_serde=StringSerde(), value_serde=StringSerde()).process(
        lambda: Recorder(calls))
    return TopologyTestDriver(b, initial_wall_clock_ms=1000)


def test_stream_time_punctuation_advances_only_with_records() -> None:
    calls: list[tuple[str, int]] = []
    with _driver(calls) as driver:
        topic = driver.input_topic("in", StringSerde(), StringSerde())
        driver.advance_wall_clock(50)  # wall clock moves: no stream-time punctuation
        assert calls == []
        topic.pipe("k", "v", 5)   # first record: fires at once
        topic.pipe("k", "v", 12)  # 15 not reached
        topic.pipe("k", "v", 3)   # out of order: stream time stays 12
        topic.pipe("k", "v", 31)  # 15 passed (missed intervals are skipped, not replayed)
        assert calls == [("record", 5), ("stream", 5), ("record", 12), ("record", 3),
                         ("record", 31), ("stream", 31)]


def test_wall_clock_punctuation_follows_the_driver_clock_only() -> None:
    calls: list[tuple[str, int]] = []
    with _driver(calls) as driver:
        topic = driver.input_topic("in", StringSerde(), StringSerde())
        topic.pipe("k", "v", 10**9)  # event time far ahead: no wall-clock punctuation
        assert [c for c in calls if c[0] == "wall"] == []
        driver.advance_wall_clock(99)
        assert [c for c in calls if c[0] == "wall"] == []
        driver.advance_wall_clock(1)
        driver.advance_wall_clock(250)
        assert [c for c in calls if c[0] == "wall"] == [("wall", 1100), ("wall", 1350)]
