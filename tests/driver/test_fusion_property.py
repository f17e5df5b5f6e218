"""Property: a fused chain does exactly what its operators' `process` methods do.

Random chains of stateless operators (with branches, fan-out and a Processor API node mixed
in) run through the TopologyTestDriver twice, fused and unfused, on the same random input;
outputs, user-function calls and what the sink serdes saw must be identical.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kstream import StreamBuilder
from kstream.dsl.stream import Stream
from kstream.processor import Processor
from kstream.record import Headers, Record
from kstream.testing import TopologyTestDriver
from serdes import SerdeContext

Op = tuple[str, int]
Input = tuple[int, int, int, Headers | None]  # key, value, timestamp, headers


class _Log:
    """Everything a run observes besides its output topics."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []  # peeks and Processor API calls, in order
        self.serialized: list[tuple[str | None, bool, Any, Headers | None]] = []


class _IntSerde:
    """JSON ints; serialize records the context it saw and may add a header, as serdes can."""

    def __init__(self, log: _Log, add_header: bool) -> None:
        self._log = log
        self._add_header = add_header

    def serialize(self, obj: Any, ctx: SerdeContext | None = None) -> bytes | None:
        assert ctx is not None
        headers = ctx.headers
        self._log.serialized.append((ctx.topic, ctx.is_key, obj,
                                     None if headers is None else list(headers)))
        if self._add_header and headers is not None and not ctx.is_key:
            headers.append(("ser", str(ctx.topic).encode()))
        return None if obj is None else json.dumps(obj).encode()

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Any:
        return None if data is None else json.loads(data)


class _Stamp(Processor):
    """A non-fusable node in the middle of a chain: adds a header to the record's own list."""

    def __init__(self, log: _Log) -> None:
        self._log = log

    def process(self, record: Record) -> None:
        self._log.calls.append(("process", record.key, record.value, record.headers))
        if record.headers is None:
            record.headers = []
        record.headers.append(("stamp", str(record.value).encode()))
        self.context.forward(record)


def _apply(stream: Stream, op: Op, log: _Log, serde: _IntSerde) -> Stream:
    kind, a = op
    if kind == "filter":
        return stream.filter(lambda k, v: (k + v) % a != 0)
    if kind == "filter_not":
        return stream.filter_not(lambda k, v: v % a == 0)
    if kind == "map":
        return stream.map(lambda k, v: (v % 7, (k * a + v) % 50))
    if kind == "map_values":
        return stream.map_values(lambda v: (v * a + 1) % 50)
    if kind == "select_key":
        return stream.select_key(lambda k, v: (k + v) % a)
    if kind == "peek":
        return stream.peek(lambda k, v: log.calls.append(("peek", a, k, v)))
    if kind == "flat_map":
        return stream.flat_map(lambda k, v: [((k + i) % 50, (v + i) % 50)
                                             for i in range((v + a) % 4)])  # 0 to 3 records
    if kind == "flat_map_values":
        return stream.flat_map_values(lambda v: [(v + i) % 50 for i in range((v + a) % 4)])
    if kind == "process":
        return stream.process(lambda: _Stamp(log))
    if kind == "split":
        branches = (stream.split()
                    .branch(lambda _k, v: v % a == 0, "hit")
                    .default_branch("miss"))
        branches["miss"].to("side", key_serde=serde, value_serde=serde)
        return branches["hit"]
    if kind == "tee":  # fan-out: a sink and the rest of the chain share a parent
        stream.to("tee", key_serde=serde, value_serde=serde)
        return stream
    raise AssertionError(kind)


def _run(chain: list[Op], inputs: list[Input], partitions: int, add_header: bool,
         fusion: bool) -> tuple[dict[str, list[tuple[Any, ...]]], _Log]:
    log = _Log()
    serde = _IntSerde(log, add_header)
    builder = StreamBuilder()
    stream = builder.stream("in", key_serde=serde, value_serde=serde)
    for op in chain:
        stream = _apply(stream, op, log, serde)
    stream.to("out", key_serde=serde, value_serde=serde)
    with TopologyTestDriver(builder, partitions={"in": partitions}, fusion=fusion) as driver:
        # Only what this chain writes: reading a topic the topology never writes is an error.
        topics = sorted({"out", "side", "tee"} & (driver.output_topics or set()))
        source = driver.input_topic("in")
        for key, value, ts, headers in inputs:
            source.pipe(json.dumps(key).encode(), json.dumps(value).encode(), ts,
                        None if headers is None else list(headers))
        outputs = {topic: [(r.key, r.value, r.timestamp, r.headers, r.partition)
                           for r in driver.output_topic(topic).read_records_to_list()]
                   for topic in topics}
    return outputs, log


_ops = st.one_of(
    st.tuples(st.sampled_from(["filter", "filter_not", "map", "map_values", "select_key"]),
              st.integers(2, 5)),
    st.tuples(st.sampled_from(["flat_map", "flat_map_values"]), st.integers(0, 3)),
    st.tuples(st.sampled_from(["peek", "process", "tee"]), st.just(0)),
    st.tuples(st.just("split"), st.integers(2, 3)),
)
_headers = st.one_of(st.none(), st.lists(
    st.tuples(st.sampled_from(["a", "b", "trace"]), st.binary(max_size=3)), max_size=3))
_inputs = st.lists(st.tuples(st.integers(0, 49), st.integers(0, 49), st.integers(0, 10**12),
                             _headers), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(chain=st.lists(_ops, min_size=1, max_size=6), inputs=_inputs,
       partitions=st.integers(1, 2), add_header=st.booleans())
def test_fused_chain_equals_process(chain: list[Op], inputs: list[Input], partitions: int,
                                    add_header: bool) -> None:
    fused, fused_log = _run(chain, inputs, partitions, add_header, fusion=True)
    plain, plain_log = _run(chain, inputs, partitions, add_header, fusion=False)
    assert fused == plain
    assert fused_log.calls == plain_log.calls
    assert fused_log.serialized == plain_log.serialized
