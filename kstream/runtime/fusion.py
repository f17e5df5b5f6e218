"""Fuse a source's chain of stateless operators into one generated function.

Why: per-record Python calls are the cost that matters. A chain filter → map_values → to runs
as one function holding key and value in locals, calling only the user's lambdas, the serdes
and the producer. This module owns the emitter and the compile step and walks the graph; each
operator writes its own lines (`kstream.runtime.operator.Fusable.fuse`, next to its `process`).
A source's chain is generated inside its whole source handler (`compile_source`, whose prologue
and epilogue the task writes), which loops over a run of one partition's records of the
consumed batch (a Python call and the engine's dispatch per run, not per record; output
counters kept in locals until the run ends); a record handed on by a processor enters
through `compile_record_entry`.
Anything else (Processor API nodes, branches, dynamic sinks, fan-out) receives a normal Record
and runs as a processor, so semantics are unchanged.

Invariant: the generated code does exactly what the operators' `process` methods do, in the
same order; tests run the same topologies fused and unfused (`AppConfig.fusion`).
"""

from __future__ import annotations

import itertools
import linecache
import weakref
from collections.abc import Callable
from typing import Any, TypeGuard

from kstream.errors import RecordError
from kstream.processor import Processor
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable
from kstream.runtime.shared_values import checked_child
from kstream.topology import Topology
from serdes._fast import restores_bytes

Chain = Callable[[Any, Any, int, Any, int], None]
"""chain(key, value, timestamp, headers, offset)"""

RunHandler = Callable[[list[Any], int], int]
"""run(msgs, i) -> next: process msgs[i:] while they are records (not error events) of the
handler's topic-partition; return the index of the first one it did not take. A RecordError
leaving it carries the failed record's index in `batch_index`."""

RECORD_DEPTH = 3
"""Indentation of a run handler's per-record lines (inside its try and while)."""

_serial = itertools.count(1)


class _Emitter:
    """Implements `kstream.runtime.operator.Emitter`: the lines and globals being generated."""

    def __init__(self, topic: str, partition: int) -> None:
        self.lines: list[str] = []
        self.env: dict[str, Any] = {"Record": Record, "TOPIC": topic, "PARTITION": partition}
        self.counter = 0
        self.check_shared_values = False  # fan-outs wrap children (TopologyTestDriver)
        self.in_run = False  # generating a run handler: outputs are counted in locals
        self.counters: dict[int, tuple[str, str, str]] = {}  # id(owner): count, last ts, flush
        self.offset = "offset"  # the record's offset: a local, or in a source handler a call
        self._source_key: tuple[Any, str, str] | None = None  # (fast decoder, raw, decoded)

    def bind(self, value: Any, prefix: str) -> str:
        name = self.local(prefix)
        self.env[name] = value
        return name

    def local(self, prefix: str) -> str:
        name = f"{prefix}{self.counter}"
        self.counter += 1
        return name

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def output_counter(self, owner: object,
                       flush: Callable[[int, int | None], None]) -> tuple[str, str] | None:
        if not self.in_run:
            return None
        known = self.counters.get(id(owner))
        if known is None:
            known = self.counters[id(owner)] = (self.local("outs"), self.local("lastts"),
                                                self.bind(flush, "addouts"))
        return known[0], known[1]

    def note_source_key(self, fast: Any, raw: str, decoded: str) -> None:
        self._source_key = (fast, raw, decoded)

    def source_key_bytes(self, fast: Any) -> tuple[str, str] | None:
        known = self._source_key
        if known is not None and restores_bytes(known[0], fast):
            return known[2], known[1]
        return None

    # Facts about the current `value`, each valid only while no line follows the one that
    # established it (its index is kept): then nothing else can have run in between.
    _change: tuple[int, str] | None = None      # (line index, `new` expression)
    _encoded: tuple[int, Any, str, str] | None = None  # (lines, fast fn, obj local, data local)
    _key_bytes: tuple[int, Any, str] | None = None  # (lines, fast fn, data local)

    def assign_change(self, depth: int, change: str, old: str, new: str) -> None:
        self.line(depth, f"value = {change}({old}, {new})")
        self._change = (len(self.lines) - 1, new)

    def unwrap_change(self, depth: int) -> None:
        change = self._change
        if change is not None and change[0] == len(self.lines) - 1:
            self.lines[change[0]] = "    " * depth + f"value = {change[1]}"
            self._change = None
            return
        self.line(depth, "value = value.new")

    def note_encoding(self, fast: Any, obj: str, data: str) -> None:
        self._encoded = (len(self.lines), fast, obj, data)

    def known_encoding(self, fast: Any) -> tuple[str, str] | None:
        enc = self._encoded
        if enc is not None and enc[0] == len(self.lines) and enc[1] is fast:
            return enc[2], enc[3]
        return None

    def note_key_bytes(self, fast: Any, data: str) -> None:
        self._key_bytes = (len(self.lines), fast, data)

    def known_key_bytes(self, fast: Any) -> str | None:
        known = self._key_bytes
        if known is not None and known[0] == len(self.lines) and known[1] is fast:
            return known[2]
        return None


def fusable(proc: Processor) -> TypeGuard[Fusable]:
    return isinstance(proc, Fusable) and proc.can_fuse()


def compile_source(topology: Topology, first_children: list[str],
                   processors: dict[str, Processor], topic: str, partition: int, *,
                   prologue: Callable[[Emitter], None], skip: str,
                   epilogue: Callable[[Emitter], None], env: dict[str, Any],
                   check_shared_values: bool = False, check_topic: bool = True) -> RunHandler:
    """Generate a whole source handler, a `RunHandler` looping over a run of the batch: per
    record the task's `prologue` lines (at RECORD_DEPTH, with `msg`; they leave key, value,
    ts and headers in locals and open a block one deeper), the fused chain inlined there with
    `skip` (a statement ending in `continue`) for dropped records, then the task's `epilogue`
    (RECORD_DEPTH). `env`: fixed global names they use. `check_topic=False` when no other
    topic can be in the batch (the consumer reads only this one).

    Invariants: `i` is past the current record before any line that can raise, so a
    RecordError names `i - 1`; output counts kept in locals (`output_counter`) reach their
    owner when the run ends, however it ends."""
    em = _Emitter(topic, partition)
    em.env.update(env)
    em.check_shared_values = check_shared_values
    em.in_run = True
    em.offset = "msg.offset()"  # most records never need it: read where used
    em.line(0, "def handle_run(msgs, i):")
    em.line(1, "end = len(msgs)")
    counters_at = len(em.lines)
    em.line(1, "try:")
    em.line(2, "while i < end:")
    em.line(RECORD_DEPTH, "msg = msgs[i]")
    topic_check = " or msg.topic() != TOPIC" if check_topic else ""
    em.line(RECORD_DEPTH, f"if msg.error() is not None or msg.partition() != PARTITION"
                          f"{topic_check}:")
    em.line(RECORD_DEPTH + 1, "break")
    em.line(RECORD_DEPTH, "i += 1")
    prologue(em)
    _emit_children(em, topology, first_children, processors, depth=RECORD_DEPTH + 1, skip=skip)
    epilogue(em)
    em.line(1, f"except {em.bind(RecordError, 'RecordError')} as err:")
    em.line(2, "err.batch_index = i - 1")
    em.line(2, "raise")
    if em.counters:
        em.line(1, "finally:")
        for count, last, flush in em.counters.values():
            em.line(2, f"if {count}: {flush}({count}, {last})")
        em.lines[counters_at:counters_at] = [f"    {count} = 0; {last} = None"
                                             for count, last, _ in em.counters.values()]
    em.line(1, "return i")
    return _compile(em, "handle_run", f"source {topic}")


def compile_record_entry(topology: Topology, node: str,
                         processors: dict[str, Processor], *,
                         check_shared_values: bool = False) -> Callable[[Record], None]:
    """A fused function that takes a Record at `node` (e.g. the output of an aggregation)."""
    em = _Emitter("", -1)
    em.check_shared_values = check_shared_values
    em.line(0, "def entry(record):")
    em.line(1, "key = record.key; value = record.value; ts = record.timestamp")
    em.line(1, "headers = record.headers; offset = record.offset")
    em.line(1, "TOPIC = record.topic; PARTITION = record.partition")
    _emit_node(em, topology, node, processors, depth=1, skip="return")
    em.line(1, "return None")
    return _compile(em, "entry", f"entry {node}")


def _compile(em: _Emitter, function: str, label: str) -> Callable[..., Any]:
    """Build the generated function (its caller wrote the last line); its source stays
    readable on the result.

    The source is registered with linecache under a unique name, so tracebacks through
    generated code show its lines; the entry goes when the code object does (mtime None:
    linecache.checkcache keeps it, as it has no file to compare with).
    """
    source = "\n".join(em.lines) + "\n"
    filename = f"<kstream fused {label}#{next(_serial)}>"
    namespace = dict(em.env)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    built = namespace[function]
    built.__kstream_source__ = source
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    weakref.finalize(built.__code__, linecache.cache.pop, filename, None)
    return built


def _emit_children(em: _Emitter, topology: Topology, children: list[str],
                   processors: dict[str, Processor], depth: int, skip: str) -> None:
    if len(children) == 1:
        _emit_node(em, topology, children[0], processors, depth, skip)
        return
    # Fan-out as ProcessorContext does it: copies for all but the last child (the copy is
    # Record.copy's), the last one gets the record's own header list.
    for i, child in enumerate(children):
        target: Callable[[Record], None] = processors[child].process
        if em.check_shared_values and i < len(children) - 1:
            target = checked_child(target, child)
        proc = em.bind(target, "proc")
        own = "headers" if i == len(children) - 1 else "None if headers is None else list(headers)"
        em.line(depth, f"{proc}(Record(key, value, ts, {own}, TOPIC, PARTITION, {em.offset}))")


def _emit_node(em: _Emitter, topology: Topology, name: str, processors: dict[str, Processor],
               depth: int, skip: str) -> None:
    op = processors[name]
    if not fusable(op):
        # Hand over a Record; the processor runs as usual from here on. Inside a flat_map
        # loop `headers` is already this record's own copy (see FlatMapOp.fuse).
        proc = em.bind(op.process, "proc")
        em.line(depth, f"{proc}(Record(key, value, ts, headers, TOPIC, PARTITION, "
                       f"{em.offset}))")
        return
    inner = op.fuse(em, depth, skip)
    kids = topology.children[name]
    if inner.children_elsewhere:
        return
    if kids:
        _emit_children(em, topology, kids, processors, inner.depth, inner.skip)
    elif inner.depth > depth:
        em.line(inner.depth, "pass")  # a loop with nothing after it still runs
