"""Fuse a source's chain of stateless DSL operators into one generated function.

Why: per-record Python calls are the cost that matters. A chain filter → map_values → to runs
as one function holding key and value in locals, calling only the user's lambdas, the serdes
and the producer. Anything the fuser does not know (Processor API nodes, branches, dynamic
sinks, fan-out) receives a normal Record and runs as a processor, so semantics are unchanged.

Invariant: the generated code does exactly what the operators' `process` methods do, in the
same order; tests run the same topologies fused and unfused (KSTREAM_NO_FUSION=1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from kstream.dsl import _ops
from kstream.processor import Processor
from kstream.record import Record
from kstream.topology import Topology
from serdes import SerdeContext

Chain = Callable[[Any, Any, int, Any, int], None]
"""chain(key, value, timestamp, headers, offset)"""


def fusion_enabled() -> bool:
    return os.environ.get("KSTREAM_NO_FUSION", "") not in ("1", "true", "yes")


class _Emitter:
    def __init__(self, topic: str, partition: int) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"Record": Record, "TOPIC": topic, "PARTITION": partition}
        self.counter = 0

    def bind(self, value: Any, prefix: str) -> str:
        name = f"{prefix}{self.counter}"
        self.counter += 1
        self.env[name] = value
        return name

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)


def compile_chain(topology: Topology, first_children: list[str],
                  processors: dict[str, Processor], topic: str, partition: int,
                  collector: Any) -> Chain:
    """Generate the function that runs a source's records through its fusable operators."""
    em = _Emitter(topic, partition)
    em.line(0, "def chain(key, value, ts, headers, offset):")
    _emit_children(em, topology, first_children, processors, collector, depth=1, skip="return")
    return _compile(em, "chain", f"<kstream fused chain {topic}>")  # type: ignore[no-any-return]


_FUSABLE = (_ops.FilterOp, _ops.MapOp, _ops.MapValuesOp, _ops.SelectKeyOp, _ops.PeekOp,
            _ops.PassThroughOp, _ops.FlatMapValuesOp, _ops.FlatMapOp)


def fusable(op: Processor) -> bool:
    if type(op) is _ops.SinkOp:
        return isinstance(op._topic, str) and op._partitioner is None
    return type(op) in _FUSABLE


def compile_record_entry(topology: Topology, node: str, processors: dict[str, Processor],
                         collector: Any) -> Callable[[Record], None]:
    """A fused function that takes a Record at `node` (e.g. the output of an aggregation)."""
    em = _Emitter("", -1)
    em.line(0, "def entry(record):")
    em.line(1, "key = record.key; value = record.value; ts = record.timestamp")
    em.line(1, "headers = record.headers; offset = record.offset")
    em.line(1, "TOPIC = record.topic; PARTITION = record.partition")
    _emit_node(em, topology, node, processors, collector, depth=1, skip="return")
    return _compile(em, "entry", f"<kstream fused entry {node}>")  # type: ignore[no-any-return]


def _compile(em: _Emitter, function: str, label: str) -> Callable[..., None]:
    """Close the generated function and build it; its source stays readable on the result."""
    em.line(1, "return None")
    source = "\n".join(em.lines)
    namespace = dict(em.env)
    exec(compile(source, label, "exec"), namespace)  # noqa: S102 - our own generated code
    built = namespace[function]
    built.__kstream_source__ = source
    return built  # type: ignore[no-any-return]


def _emit_children(em: _Emitter, topology: Topology, children: list[str],
                   processors: dict[str, Processor], collector: Any, depth: int,
                   skip: str) -> None:
    if len(children) == 1:
        _emit_node(em, topology, children[0], processors, collector, depth, skip)
        return
    # Fan-out: every child gets its own record, as ProcessorContext does (copies but the last).
    for child in children:
        proc = em.bind(processors[child].process, "proc")
        em.line(depth, f"{proc}(Record(key, value, ts, list(headers) if headers else headers, "
                       "TOPIC, PARTITION, offset))")


def _emit_node(em: _Emitter, topology: Topology, name: str, processors: dict[str, Processor],
               collector: Any, depth: int, skip: str) -> None:
    op = processors[name]
    kids = topology.children[name]
    kind = type(op)
    if kind is _ops.FilterOp:
        fn = em.bind(op._predicate, "pred")  # type: ignore[attr-defined]
        neg = "not " if op._keep_when else ""  # type: ignore[attr-defined]
        em.line(depth, f"if {neg}{fn}(key, value): {skip}")
    elif kind is _ops.MapOp:
        em.line(depth, f"key, value = {em.bind(op._mapper, 'map')}(key, value)")  # type: ignore[attr-defined]
    elif kind is _ops.MapValuesOp:
        em.line(depth, f"value = {em.bind(op._mapper, 'mapv')}(value)")  # type: ignore[attr-defined]
    elif kind is _ops.SelectKeyOp:
        em.line(depth, f"key = {em.bind(op._selector, 'sel')}(key, value)")  # type: ignore[attr-defined]
    elif kind is _ops.PeekOp:
        em.line(depth, f"{em.bind(op._action, 'peek')}(key, value)")  # type: ignore[attr-defined]
    elif kind is _ops.PassThroughOp:
        pass
    elif kind is _ops.FlatMapValuesOp:
        # Operators after this one may rebind `key`; every value starts from the same key.
        saved = f"key{em.counter}"
        em.counter += 1
        em.line(depth, f"{saved} = key")
        em.line(depth, f"for value in {em.bind(op._mapper, 'fmv')}(value):")  # type: ignore[attr-defined]
        em.line(depth + 1, f"key = {saved}")
        depth, skip = depth + 1, "continue"
    elif kind is _ops.FlatMapOp:
        em.line(depth, f"for key, value in {em.bind(op._mapper, 'fm')}(key, value):")  # type: ignore[attr-defined]
        depth, skip = depth + 1, "continue"
    elif kind is _ops.SinkOp and isinstance(op._topic, str) and op._partitioner is None:
        topic = em.bind(op._topic, "topic")
        kser = em.bind(op._key_serde.serialize, "kser")
        vser = em.bind(op._value_serde.serialize, "vser")
        kctx = em.bind(SerdeContext(topic=op._topic, is_key=True), "kctx")
        vctx = em.bind(SerdeContext(topic=op._topic, is_key=False), "vctx")
        send = em.bind(collector.send, "send")
        em.line(depth, f"{send}({topic}, {kser}(key, {kctx}), {vser}(value, {vctx}), ts, headers)")
        return
    else:
        # Not fusable: hand over a Record; the processor runs as usual from here on.
        proc = em.bind(op.process, "proc")
        headers = "list(headers) if headers else headers" if skip == "continue" else "headers"
        em.line(depth, f"{proc}(Record(key, value, ts, {headers}, TOPIC, PARTITION, offset))")
        return
    if kids:
        _emit_children(em, topology, kids, processors, collector, depth, skip)
    elif skip == "continue":
        em.line(depth, "pass")
