"""A task: one partition of one sub-topology, with its own processor instances and stores.

The same Task runs under the Kafka engine and under the TopologyTestDriver: both hand it
message-like objects and a record collector, so there is one processing path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from kstream._serde_defaults import effective
from kstream.errors import (
    STAGE_DESERIALIZE,
    STAGE_PROCESS,
    STAGE_TIMESTAMP,
    InternalError,
    KStreamError,
    PunctuationError,
    RecordError,
)
from kstream.processor import Processor, ProcessorContext, PunctuationType
from kstream.record import Record
from kstream.runtime.fusion import (
    RECORD_DEPTH,
    Chain,
    RunHandler,
    compile_record_entry,
    compile_source,
    fusable,
)
from kstream.runtime.operator import Emitter
from kstream.runtime.punctuation import PunctuationSchedule, Punctuator
from kstream.runtime.shared_values import checked_child
from kstream.runtime.sink import SinkOp
from kstream.state.global_store import ReadOnlyStoreError
from kstream.topology import ProcessorNode, SinkNode, SourceNode, SubTopology, Topology
from serdes import SerdeContext
from serdes._fast import fast_deserializer

log = logging.getLogger("kstream.task")

SKIP_NULL_KEY = "null_key"
SKIP_NULL_VALUE = "null_value"
SKIP_REASONS = (SKIP_NULL_KEY, SKIP_NULL_VALUE)  # stats/metrics key: f"skipped_{reason}"
SKIP_LOG_INTERVAL_S = 10.0


class Message(Protocol):
    """What a task reads: confluent_kafka.Message, or the test driver's equivalent."""

    def topic(self) -> str: ...  # consumed records always have topic, partition, offset
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...
    def error(self) -> Any: ...


@runtime_checkable
class CachingProcessor(Protocol):
    """A processor with a record cache (emit-on-commit aggregations): flushed before the
    changelog is written, dropped on abort."""

    def flush_cache(self) -> None: ...
    def discard_cache(self) -> None: ...


class RecordCollector(Protocol):
    """Where sinks send serialized records (the producer, or the test driver's outputs)."""

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int = -1) -> None: ...

    def partition_count(self, topic: str) -> int: ...

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None: ...


class Task:
    """Processor instances of one sub-topology for one partition number.

    `fusion=False` runs every operator's `process` instead of generated chains (AppConfig.fusion).
    """

    def __init__(self, application_id: str, topology: Topology, sub: SubTopology, partition: int,
                 collector: RecordCollector, stores: dict[str, Any] | None = None,
                 clock: Callable[[], int] | None = None, *, fusion: bool = True,
                 check_shared_values: bool = False,
                 global_stores: dict[str, Any] | None = None, sole_topic: bool = False) -> None:
        self.application_id = application_id
        # The engine's consumer reads this task's one topic and no other: a run of the batch
        # ends only where the partition changes, so fused run handlers skip the topic check.
        self._sole_topic = sole_topic
        # The instance's global stores (kstream.state.global_store): shared by every task,
        # read-only, readable by every processor without connecting them.
        self.global_stores: dict[str, Any] = global_stores or {}
        # TopologyTestDriver: fan-outs check that no branch mutates a shared value
        # (kstream.runtime.shared_values). Read while building, so set before _build.
        self.check_shared_values = check_shared_values
        self.sub = sub
        self.partition = partition
        self.task_id = f"{sub.index}_{partition}"
        self.collector = collector
        self.stores: dict[str, Any] = stores or {}
        self.stream_time = -1
        self.dropped_late = 0  # records too late for their window (windowed operators count)
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)  # see skip()
        self._skip_logged: dict[str, float] = {}
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._fusion = fusion
        self._store_users: dict[str, set[str]] = {}
        self.punctuation = PunctuationSchedule()
        self._processors: dict[str, Processor] = {}
        self._handlers: dict[str, RunHandler] = {}
        self._build(topology)

    # -- construction --------------------------------------------------------------------------
    def _build(self, topology: Topology) -> None:
        contexts: dict[str, ProcessorContext] = {}
        sources: list[SourceNode] = []
        for name in self.sub.nodes:
            node = topology.nodes[name]
            if isinstance(node, SourceNode):
                sources.append(node)
                continue
            if isinstance(node, SinkNode):
                self._processors[name] = SinkOp(node)
            else:
                assert isinstance(node, ProcessorNode)
                self._processors[name] = node.supplier()
                for store in node.stores:
                    self._store_users.setdefault(store, set()).add(name)
            contexts[name] = ProcessorContext(self, name)
        # Children before parents, so a parent's init can bind its children's process methods.
        for name in reversed(_topological(topology, self.sub.nodes)):
            if name not in self._processors:
                continue
            contexts[name]._connect({kid: self._entry(topology, kid)
                                     for kid in topology.children[name]})
            self._processors[name].init(contexts[name])
        order = _topological(topology, self.sub.nodes)
        caching: list[CachingProcessor] = []
        for name in order:
            proc = self._processors.get(name)
            if isinstance(proc, CachingProcessor):
                caching.append(proc)
        self._cache_flushes = [p.flush_cache for p in caching]
        self._cache_discards = [p.discard_cache for p in caching]
        for source in sources:
            for topic in source.topics:
                if self._fusion:
                    self._handlers[topic] = self._fused_source(topology, source, topic)
                else:
                    chain = self._chain(topology, source, topic)
                    self._handlers[topic] = _run_of(self._source_handler(source, topic, chain),
                                                    topic, self.partition)

    def _entry(self, topology: Topology, node: str) -> Callable[[Record], None]:
        """How a parent hands a record to `node`: a fused chain when it starts there."""
        proc = self._processors[node]
        if self._fusion and fusable(proc):
            return compile_record_entry(topology, node, self._processors,
                                        check_shared_values=self.check_shared_values)
        return proc.process

    def _chain(self, topology: Topology, source: SourceNode, topic: str) -> Chain:
        """What runs after deserialization without fusion: plain processor calls (with fusion
        the chain is generated inside the source handler, see `_fused_source`)."""
        children = topology.children[source.name]
        targets: list[Callable[[Record], None]] = [self._processors[kid].process
                                                   for kid in children]
        if self.check_shared_values and len(targets) > 1:
            targets = [checked_child(t, kid) for t, kid in zip(targets[:-1], children,
                                                               strict=False)] + targets[-1:]
        downstream = _fan_out(targets)
        partition = self.partition

        def unfused(key: Any, value: Any, ts: int, headers: Any, offset: int) -> None:
            downstream(Record(key, value, ts, headers, topic, partition, offset))

        return unfused

    def _fused_source(self, topology: Topology, source: SourceNode,
                      topic: str) -> RunHandler:
        """`_run_of(_source_handler)` around the fused chain, generated as one function: the
        same decode, timestamp checks, errors, stream time and punctuation, in the same order,
        with the chain's lines inline (no Python call per record). A dropped record still
        checks punctuation, as after the chain returns in `_source_handler`."""
        dec = _SourceDecoding(source, topic, self.partition)

        def prologue(em: Emitter) -> None:
            d = RECORD_DEPTH  # inside the run's loop
            key_raw = None
            em.line(d, "try:")
            for name, fast, de, ctx in (("key", dec.key_fast, dec.key_de, dec.key_ctx),
                                        ("value", dec.value_fast, dec.value_de, dec.value_ctx)):
                if fast is None:
                    em.line(d + 1, f"{name} = {em.bind(de, 'de')}(msg.{name}(), "
                                   f"{em.bind(ctx, 'dctx')})")
                elif name == "key":
                    # Kept with its raw bytes: a sink with the inverse codec reuses them.
                    key_raw, key_in = em.local("kraw"), em.local("kin")
                    em.line(d + 1, f"{key_raw} = msg.key()")
                    em.line(d + 1, f"key = {key_in} = None if {key_raw} is None else "
                                   f"{em.bind(fast, 'defast')}({key_raw})")
                    em.note_source_key(fast, key_raw, key_in)
                else:
                    em.line(d + 1, f"{name} = msg.{name}()")
                    em.line(d + 1, f"if {name} is not None: {name} = {em.bind(fast, 'defast')}"
                                   f"({name})")
            em.line(d, "except Exception as exc:")
            em.line(d + 1, f"key, value = {em.bind(dec.redo, 'redo')}(msg, exc)")
            if key_raw is not None:
                em.line(d + 1, f"{key_raw} = {key_in} = None")  # not this record's: no reuse
            em.line(d, "headers = msg.headers()")
            em.line(d, "ts = msg.timestamp()[1]")
            ts_error = em.bind(dec.timestamp_error, "tserr")
            if source.timestamp_extractor is not None:
                extract = em.bind(source.timestamp_extractor, "extract")
                em.line(d, "try:")
                em.line(d + 1, f"ts = int({extract}(Record(key, value, ts, headers, TOPIC, "
                               f"PARTITION, {em.bind(_off, 'off')}(msg.offset())), "
                               "TASK.stream_time))")
                em.line(d, "except Exception as exc:")
                em.line(d + 1, f"raise {ts_error}(msg.offset(), exc) from exc")
            em.line(d, "if ts < 0:")
            em.line(d + 1, f'raise {ts_error}(msg.offset(), '
                           f'ValueError(f"invalid timestamp {{ts}}"))')
            em.line(d, "if ts > TASK.stream_time:")
            em.line(d + 1, "TASK.stream_time = ts")
            em.line(d, "try:")

        def epilogue(em: Emitter) -> None:
            d = RECORD_DEPTH
            em.line(d, f"except {em.bind(KStreamError, 'KStreamError')}:")
            em.line(d + 1, "raise")
            em.line(d, "except Exception as exc:")
            em.line(d + 1, f"raise {em.bind(_process_error, 'procerr')}(exc, TOPIC, PARTITION, "
                           f"{em.bind(_off, 'off')}(msg.offset())) from exc")
            em.line(d, _PUNCTUATE_IF_DUE)

        return compile_source(
            topology, topology.children[source.name], self._processors, topic, self.partition,
            prologue=prologue, epilogue=epilogue, skip=f"{_PUNCTUATE_EXPR}; continue",
            env={"TASK": self, "SCHED": self.punctuation},
            check_shared_values=self.check_shared_values, check_topic=not self._sole_topic)

    def _source_handler(self, source: SourceNode, topic: str,
                        chain: Chain) -> Callable[[Message], None]:
        dec = _SourceDecoding(source, topic, self.partition)
        key_ctx, value_ctx = dec.key_ctx, dec.value_ctx
        key_de, value_de = dec.key_de, dec.value_de
        key_fast, value_fast = dec.key_fast, dec.value_fast  # None: call the serde
        redo, ts_error = dec.redo, dec.timestamp_error
        extractor = source.timestamp_extractor
        partition = self.partition
        schedule = self.punctuation
        task = self

        def handle(msg: Message) -> None:
            try:
                data = msg.key()
                key = (key_de(data, key_ctx) if key_fast is None
                       else None if data is None else key_fast(data))
                data = msg.value()
                value = (value_de(data, value_ctx) if value_fast is None
                         else None if data is None else value_fast(data))
            except Exception as exc:
                key, value = redo(msg, exc)
            headers = msg.headers()
            ts = msg.timestamp()[1]
            if extractor is not None:
                try:
                    ts = int(extractor(Record(key, value, ts, headers, topic, partition,
                                              _off(msg.offset())), task.stream_time))
                except Exception as exc:
                    raise ts_error(msg.offset(), exc) from exc
            if ts < 0:
                raise ts_error(msg.offset(), ValueError(f"invalid timestamp {ts}"))
            if ts > task.stream_time:
                task.stream_time = ts
            try:
                chain(key, value, ts, headers, msg.offset())
            except KStreamError:  # engine-level failures are not the record's fault
                raise
            except Exception as exc:
                raise _process_error(exc, topic, partition, _off(msg.offset())) from exc
            if task.stream_time >= schedule._next_stream_due:
                task.punctuate_stream_time()

        return handle

    # -- processing ----------------------------------------------------------------------------
    def process(self, msg: Message) -> None:
        """Run one input record through the sub-topology. Raises RecordError naming the record."""
        self.handler(msg.topic())(msg)

    def run_handler(self, topic: str) -> RunHandler:
        """What the engine calls per run of a batch: `run(msgs, i) -> next index`."""
        return self._handlers[topic]

    def handler(self, topic: str) -> Callable[[Message], None]:
        """One record at a time (the TopologyTestDriver, a replay): a run of one."""
        run = self._handlers[topic]

        def one(msg: Message) -> None:
            if run([msg], 0) != 1:
                raise InternalError(f"{msg.topic()}[{msg.partition()}] is not task "
                                    f"{self.task_id}'s or not a record")

        return one

    def schedule(self, interval_ms: int, kind: PunctuationType,
                 callback: Callable[[int], None]) -> Punctuator:
        now = self.stream_time if kind is PunctuationType.STREAM_TIME else self.wall_clock_ms()
        return self.punctuation.add(interval_ms, kind, callback, now)

    def punctuate_stream_time(self) -> None:
        self._punctuate(PunctuationType.STREAM_TIME, self.stream_time)

    def punctuate_wall_clock(self) -> None:
        self._punctuate(PunctuationType.WALL_CLOCK_TIME, self.wall_clock_ms())

    def wall_clock_due(self) -> bool:
        return self.punctuation.wall_clock_due(self.wall_clock_ms())

    def _punctuate(self, kind: PunctuationType, now: int) -> None:
        try:
            self.punctuation.fire(kind, now)
        except KStreamError:
            raise
        except Exception as exc:
            raise PunctuationError(
                f"task {self.task_id}: {kind.value} punctuator failed at {now}: "
                f"{type(exc).__name__}: {exc}") from exc

    def wall_clock_ms(self) -> int:
        return self._clock()

    def skip(self, reason: str, node: str, record: Record) -> None:
        """An operator could not use `record` (null key or value): count it by reason and
        log it, at most once per operator and reason every SKIP_LOG_INTERVAL_S."""
        self.skipped[reason] += 1
        now = time.monotonic()
        what = f"{node}/{reason}"
        if now - self._skip_logged.get(what, -SKIP_LOG_INTERVAL_S) >= SKIP_LOG_INTERVAL_S:
            self._skip_logged[what] = now
            log.warning("event=record_skipped reason=%s operator=%s record=%s[%s]@%s "
                        "skipped_so_far=%d", reason, node, record.topic, record.partition,
                        record.offset, self.skipped[reason])

    def get_store(self, name: str, processor: str) -> Any:
        if name in self.global_stores and name not in self._store_users:
            return self.global_stores[name]
        if processor not in self._store_users.get(name, ()):
            raise KeyError(f"processor {processor!r} is not connected to store {name!r}; "
                           "connect it with Topology.connect_store or Stream.process(..., store)")
        return self.stores[name]

    # -- commit hooks (see kstream.runtime.commit for the order) --------------------------------
    def prepare_commit(self) -> None:
        """Emit coalesced updates (record caches), then send the stores' buffered writes to
        their changelogs (inside the transaction)."""
        self.flush_caches()
        self.send_changelogs()

    def flush_caches(self) -> None:
        for flush in self._cache_flushes:
            flush()

    def send_changelogs(self) -> None:
        for store in self.stores.values():
            store.prepare_commit(self.collector)

    def after_commit(self) -> None:
        """Kafka accepted the commit: apply buffered writes to the local stores."""
        for store in self.stores.values():
            store.after_commit()

    def discard_uncommitted(self) -> None:
        """The transaction was aborted: forget buffered writes; the input is replayed."""
        for discard in self._cache_discards:
            discard()
        for store in self.stores.values():
            store.discard_uncommitted()

    def close(self) -> None:
        for proc in self._processors.values():
            proc.close()
        for store in self.stores.values():
            store.close()


# Generated source handlers (Task._fused_source) end with this check; a dropped record takes
# the expression form (`return <expr>`: punctuate_stream_time returns None).
_PUNCTUATE_EXPR = ("None if TASK.stream_time < SCHED._next_stream_due "
                   "else TASK.punctuate_stream_time()")
_PUNCTUATE_IF_DUE = ("if TASK.stream_time >= SCHED._next_stream_due: "
                     "TASK.punctuate_stream_time()")


class _SourceDecoding:
    """A source topic's deserializers for one task, and the error naming a bad record.

    Hot path: the serde contexts are filled in only when deserialization fails (then the call
    is repeated with full context so the error names the record)."""

    def __init__(self, source: SourceNode, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.key_ctx = SerdeContext(topic=topic, partition=partition, is_key=True)
        self.value_ctx = SerdeContext(topic=topic, partition=partition, is_key=False)
        self.key_de = source.key_serde.deserialize
        self.value_de = source.value_serde.deserialize
        self.key_fast = fast_deserializer(effective(source.key_serde))  # None: call the serde
        self.value_fast = fast_deserializer(effective(source.value_serde))

    def redo(self, msg: Message, first: Exception) -> tuple[Any, Any]:
        """Decoding raised `first` (a C shortcut may refuse input its serde takes, e.g. a
        bytearray): (key, value) from the serdes themselves, with the record in their
        contexts; if they fail too, the RecordError naming the record."""
        offset = msg.offset()
        for ctx in (self.key_ctx, self.value_ctx):
            ctx.offset, ctx.headers = offset, msg.headers()
        try:
            return self.key_de(msg.key(), self.key_ctx), self.value_de(msg.value(), self.value_ctx)
        except Exception as exc:
            raise RecordError(STAGE_DESERIALIZE, self.topic, self.partition, _off(offset),
                              exc) from first

    def timestamp_error(self, offset: int | None, cause: Exception) -> RecordError:
        return RecordError(STAGE_TIMESTAMP, self.topic, self.partition, _off(offset), cause)


_KSTREAM_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
_NOT_INTERNAL = (str(Path(_KSTREAM_DIR) / "testing") + os.sep,)


def _process_error(exc: Exception, topic: str, partition: int, offset: int) -> KStreamError:
    """A RecordError when user code (or a serde) raised; an InternalError when the innermost
    frame is kstream's own code, so a broken invariant is never dead-lettered as a bad
    record; but a processor writing a read-only (global) store is the processor's error,
    though kstream's store raises it. Only runs on the error path."""
    if isinstance(exc, ReadOnlyStoreError):
        return RecordError(STAGE_PROCESS, topic, partition, offset, exc)
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    if filename.startswith(_KSTREAM_DIR) and not filename.startswith(_NOT_INTERNAL):
        where = f"{filename}:{tb.tb_lineno if tb is not None else '?'}"
        return InternalError(f"kstream failed at {where} while processing {topic}[{partition}]"
                             f"@{offset}: {type(exc).__name__}: {exc}")
    return RecordError(STAGE_PROCESS, topic, partition, offset, exc)


def _run_of(handle: Callable[[Message], None], topic: str, partition: int) -> RunHandler:
    """The unfused form of a generated run handler (see compile_source): same loop, same
    stop conditions, the failed record's index on the RecordError."""

    def run(msgs: list[Any], i: int) -> int:
        end = len(msgs)
        try:
            while i < end:
                msg = msgs[i]
                if (msg.error() is not None or msg.partition() != partition
                        or msg.topic() != topic):
                    break
                i += 1
                handle(msg)
        except RecordError as err:
            err.batch_index = i - 1
            raise
        return i

    return run


def _off(offset: int | None) -> int:
    return -1 if offset is None else offset


def _fan_out(targets: list[Callable[[Record], None]]) -> Callable[[Record], None]:
    if len(targets) == 1:
        return targets[0]

    def fan(record: Record) -> None:
        for child in targets[:-1]:
            child(record.copy())
        if targets:
            targets[-1](record)

    return fan


def _topological(topology: Topology, names: list[str]) -> list[str]:
    """Nodes ordered parents-first (the graph is acyclic by construction)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for parent in topology.parents[name]:
            visit(parent)
        order.append(name)

    for name in names:
        visit(name)
    return order


def build_task(application_id: str, topology: Topology, sub: SubTopology, partition: int,
               collector: RecordCollector, state_root: Path,
               clock: Callable[[], int] | None = None, *, fusion: bool = True,
               check_shared_values: bool = False,
               global_stores: dict[str, Any] | None = None, sole_topic: bool = False) -> Task:
    """Create a task and its stores; the engine and the TopologyTestDriver both come here.

    Each store builder makes the task's instance under `<state_root>/<task_id>/`, logging to
    `<application_id>-<store>-changelog` partition `partition` when logging is enabled.
    """
    task_id = f"{sub.index}_{partition}"
    stores = {}
    for name in sub.stores:
        builder = topology.stores[name]
        stores[name] = builder.build(state_root / task_id, partition,
                                     builder.changelog_topic(application_id))
    return Task(application_id, topology, sub, partition, collector, stores, clock,
                fusion=fusion, check_shared_values=check_shared_values, sole_topic=sole_topic,
                global_stores=global_stores)
