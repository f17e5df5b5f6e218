"""Processor API: forward to a named child, stream-time and wall-clock punctuation."""

from __future__ import annotations

from kstream import STREAM_TIME, WALL_CLOCK_TIME, Processor, ProcessorContext, Record, Topology
from kstream.testing import TopologyTestDriver


class Router(Processor):
    """Evens and odds to different children; ticks on stream time (10) and wall clock (1000)."""

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        context.schedule(10, STREAM_TIME, self._on_stream_time)
        context.schedule(1000, WALL_CLOCK_TIME, self._on_wall_clock)

    def process(self, record: Record) -> None:
        record.headers = [*(record.headers or []), ("routed-by", b"router")]
        self.context.forward(record, to="evens" if record.value % 2 == 0 else "odds")

    def _on_stream_time(self, ts: int) -> None:
        self.context.forward(Record(f"stream@{self.context.partition}", ts, ts), to="ticks")

    def _on_wall_clock(self, ts: int) -> None:
        self.context.forward(Record(f"wall@{self.context.partition}", ts, ts), to="ticks")


def _topology() -> Topology:
    t = Topology()
    t.add_source("src", "numbers", key_serde="string", value_serde="int64")
    t.add_processor("router", Router, "src")
    for child, topic in (("evens", "even-numbers"), ("odds", "odd-numbers"), ("ticks", "ticks")):
        t.add_sink(child, topic, "router", key_serde="string", value_serde="int64")
    return t


def test_forward_to_named_child_keeps_headers() -> None:
    with TopologyTestDriver(_topology()) as driver:
        src = driver.input_topic("numbers", "string", "int64")
        src.pipe_many([("a", 1, 1), ("b", 2, 2), ("c", 4, 3)])
        src.pipe("d", 7, timestamp=4, headers={"h": b"x"})
        evens = driver.output_topic("even-numbers", "string", "int64")
        odds = driver.output_topic("odd-numbers", "string", "int64")
        assert evens.read_key_values_to_list() == [("b", 2), ("c", 4)]
        odd = odds.read_records_to_list()
        assert [(r.key, r.value, r.timestamp) for r in odd] == [("a", 1, 1), ("d", 7, 4)]
        assert odd[0].headers == [("routed-by", b"router")]
        assert odd[1].headers == [("h", b"x"), ("routed-by", b"router")]


def test_stream_time_punctuation_fires_as_records_arrive() -> None:
    with TopologyTestDriver(_topology()) as driver:
        src = driver.input_topic("numbers", "string", "int64")
        ticks = driver.output_topic("ticks", "string", "int64")
        fired = []
        for ts in (5, 12, 15, 14, 40, 44, 45):
            src.pipe("k", 1, timestamp=ts)
            fired.append([v for _, v in ticks.read_key_values_to_list()])
        # First record fires at once; then every 10 ms of stream time, skipping missed
        # intervals; an out-of-order record (14) does not move stream time.
        assert fired == [[5], [], [15], [], [40], [], [45]]
        # The wall clock has not moved: no wall-clock ticks.
        driver.advance_wall_clock(0)
        assert ticks.is_empty()


def test_wall_clock_punctuation_fires_on_every_task() -> None:
    with TopologyTestDriver(_topology(), partitions={"numbers": 2},
                            initial_wall_clock_ms=500) as driver:
        ticks = driver.output_topic("ticks", "string", "int64")
        driver.advance_wall_clock(999)
        assert ticks.is_empty()
        driver.advance_wall_clock(1)
        assert sorted(ticks.read_key_values_to_list()) == [("wall@0", 1500), ("wall@1", 1500)]
        driver.advance_wall_clock(2_500)  # missed intervals fire once, then realign
        assert sorted(ticks.read_key_values_to_list()) == [("wall@0", 4000), ("wall@1", 4000)]
        driver.advance_wall_clock(499)
        assert ticks.is_empty()
        driver.advance_wall_clock(1)
        assert ticks.queue_size() == 2
        assert driver.wall_clock_ms == 4_500
        # No record was piped, so no stream-time punctuation happened.
        assert {k for k, _ in ticks.read_key_values_to_list()} == {"wall@0", "wall@1"}


class Buffer(Processor):
    """Keeps records until a wall-clock punctuation flushes them to a repartition topic."""

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.held: list[Record] = []
        context.schedule(100, WALL_CLOCK_TIME, self._flush)

    def process(self, record: Record) -> None:
        self.held.append(record.copy())

    def _flush(self, ts: int) -> None:
        for record in self.held:
            self.context.forward(record)
        self.held.clear()


def test_punctuation_output_to_a_source_topic_is_processed() -> None:
    t = Topology()
    t.add_source("src", "in")
    t.add_processor("buffer", Buffer, "src")
    t.add_sink("to-rep", "test-app-held-repartition", "buffer")
    t.add_source("rep", "test-app-held-repartition")
    t.add_sink("out", "out", "rep")
    with TopologyTestDriver(t) as driver:
        driver.input_topic("in").pipe_many([(b"a", b"1"), (b"b", b"2")])
        out = driver.output_topic("out")
        assert out.is_empty()
        driver.advance_wall_clock(100)
        assert out.read_key_values_to_list() == [(b"a", b"1"), (b"b", b"2")]


def test_record_copy_never_shares_a_header_list() -> None:
    from kstream import Record

    for headers in ([], [("h", b"1")]):
        before = list(headers)
        original = Record("k", "v", 1, headers)
        copied = original.copy()
        copied.headers.append(("added", b"x"))  # type: ignore[union-attr]
        assert original.headers == before
        assert copied.headers == [*before, ("added", b"x")]
    assert Record("k", "v", 1, None).copy().headers is None
