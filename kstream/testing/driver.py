"""TopologyTestDriver: run a topology in-process, without Kafka, on the engine's own code.

Tasks come from `build_task`; outputs go through the engine's `KafkaRecordCollector`; commits
go through the engine's committer for the chosen processing guarantee (kstream.runtime.commit);
a failing record goes through the engine's bad-record policy (kstream.runtime.bad_records).
Only the Kafka clients are replaced, by the in-memory fakes of `_fake_clients`, as Kafka
Streams' TopologyTestDriver runs its production task and producer over a MockProducer. A
difference between the driver and a broker is a bug in whichever differs.

Everything is synchronous and deterministic: no threads, and the only clock is the driver's.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn, cast

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kstream.config import (
    AT_MOST_ONCE,
    ERROR_FAIL,
    ERROR_POLICIES,
    EXACTLY_ONCE,
    GUARANTEES,
    ConfigError,
)
from kstream.dsl import StreamBuilder
from kstream.errors import (
    AbortableError,
    FatalError,
    KStreamError,
    MissingTopicsError,
    RecordError,
    TaskMigratedError,
)
from kstream.record import Headers, Record
from kstream.runtime import topics
from kstream.runtime.bad_records import BadRecordAction, handle_bad_record
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.commit import make_committer
from kstream.runtime.global_state import GlobalStateMaintainer
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import SKIP_REASONS, Task, build_task
from kstream.state.kv import KeyValueStore
from kstream.testing._fake_clients import (
    FakeConsumer,
    FakeKafka,
    FakeMessage,
    FakeProducer,
    murmur2,
    partition_for_key,
)
from kstream.topology import SinkNode, Topology
from serdes import Serde, SerdeContext, resolve

__all__ = ["TestInputTopic", "TestOutputTopic", "TopologyTestDriver", "murmur2",
           "partition_for_key"]

log = logging.getLogger("kstream.driver")

HeadersLike = Mapping[str, Any] | Iterable[tuple[str, Any]]
"""Header values may be bytes, str (sent as UTF-8) or None, as confluent-kafka accepts."""

COMMIT_TIMEOUT_S = 30.0  # the fakes never wait; the committers want a deadline
RECOVERIES_WITHOUT_COMMIT = 50  # as the engine: a Kafka error that keeps coming back stops it
Recoverable = (AbortableError, TaskMigratedError)  # ProducerFencedError is a TaskMigratedError


class _Failed(Exception):
    """Internal: a record failed under error_policy="fail" (the policy already logged it).

    `index` is the piped record (in the uncommitted interval) whose processing reached the
    failed record, `ordinal` the failed record's place in that processing (0: the piped record
    itself; then its fed-back records, depth-first); `remaining` the records not processed,
    the failed one first.
    """

    def __init__(self, err: RecordError, action: BadRecordAction, ordinal: int,
                 remaining: list[FakeMessage]) -> None:
        super().__init__(str(err))
        self.err = err
        self.action = action
        self.ordinal = ordinal
        self.remaining = remaining
        self.index = -1


# -- the driver -------------------------------------------------------------------------------
class TopologyTestDriver:
    """Runs a topology without Kafka: pipe records in, read records out, advance the clock.

    One task per (sub-topology, partition), like an instance owning every partition. Records
    that sinks write to a topic the topology also reads (repartition topics) are processed
    before the next piped record, depth-first, whatever the guarantee (Kafka Streams' driver
    does the same; a broker would deliver them after the commit). Tasks commit after every
    `commit_every` piped records and after each `advance_wall_clock` (None: only on `commit()`
    and `close()`).

    `processing_guarantee` picks the engine's committer; output readers see what a consumer
    with the matching isolation level sees: under exactly_once only committed records
    (read_committed), otherwise everything sent. Under `error_policy="fail"` a bad record
    stops the driver the way it stops the engine: abort, replay up to the record, commit what
    came before it, raise its RecordError; every later call says the driver stopped.

    `default_key_serde`/`default_value_serde` are the App's settings of those names: they
    apply wherever the topology gave no serde, and to `input_topic`/`output_topic` readers and
    writers made without serdes.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, topology: Topology | StreamBuilder, application_id: str = "test-app", *,
                 partitions: Mapping[str, int] | None = None, error_policy: str = ERROR_FAIL,
                 processing_guarantee: str = EXACTLY_ONCE, initial_wall_clock_ms: int = 0,
                 state_dir: Path | str | None = None, commit_every: int | None = 1,
                 fusion: bool = True, check_store_round_trip: bool = True,
                 check_shared_values: bool = True, default_key_serde: Any = None,
                 default_value_serde: Any = None) -> None:
        if error_policy not in ERROR_POLICIES:
            raise ConfigError(f"error_policy {error_policy!r} must be one of "
                              f"{', '.join(ERROR_POLICIES)}")
        if processing_guarantee not in GUARANTEES:
            raise ConfigError(f"processing_guarantee {processing_guarantee!r} must be one "
                              f"of {', '.join(GUARANTEES)}")
        if commit_every is not None and commit_every <= 0:
            raise ConfigError(f"commit_every must be positive or None, got {commit_every}")
        for topic, count in (partitions or {}).items():
            if count <= 0:
                raise ConfigError(f"topic {topic!r} needs at least one partition, got {count}")
        built = topology if isinstance(topology, Topology) else topology.build()
        self.topology: Topology = built.bind(application_id)
        # As App does with AppConfig.default_key_serde / default_value_serde.
        self.topology.serde_defaults.bind(default_key_serde, default_value_serde)
        self._default_serdes = (default_key_serde, default_value_serde)
        self._subtopologies = self.topology.subtopologies()  # validates before making a dir
        self.application_id = application_id
        self.error_policy = error_policy
        self.processing_guarantee = processing_guarantee
        self.commit_every = commit_every
        self.fusion = fusion  # as AppConfig.fusion: False runs every operator's process()
        # Every store write is decoded again and compared: a value that would read back
        # different after a restart (JSON: datetime -> str, tuple -> list) raises
        # StoreRoundTripError naming store, key and types (kstream.state.round_trip).
        self.check_store_round_trip = check_store_round_trip
        # Branches share key and value objects: an operator that changes one in place raises
        # SharedValueMutatedError naming it (kstream.runtime.shared_values).
        self.check_shared_values = check_shared_values
        self.dlq_topic = f"{application_id}-dlq"
        self._partitions = self._check_topics(dict(partitions or {}))
        self._sub_of_topic = {t: s.index for s in self._subtopologies for t in s.source_topics}
        # Every source partition, as if this instance were assigned all of them.
        self._assignment = [TopicPartition(t, p) for t in self._sub_of_topic
                            for p in range(self.partition_count(t))]
        self._wall_clock_ms = initial_wall_clock_ms
        self._outputs: dict[str, deque[FakeMessage]] = defaultdict(deque)
        self._fed_back: list[FakeMessage] = []  # sent to source topics, not yet processed
        # Partitions consumed since the last commit: only their offsets can have moved.
        self._consumed: set[tuple[str, int]] = set()
        # The roots of the interval since the last commit: piped records, and records a commit
        # itself fed back (a record cache flushed into a repartition topic). A rewind replays
        # them in order, each with what it feeds back. Invariant: their offsets are at or after
        # the committed offsets, except under at_most_once (which skips them on replay).
        self._interval: list[FakeMessage] = []
        self._roots_done = 0  # how many of them were processed
        self._uncommitted = 0
        self._late_retired = 0  # late-record counts of tasks replaced by a rewind
        self._skipped_retired: dict[str, int] = {}  # likewise for skipped records
        self._stopped: BaseException | None = None
        self._closed = False
        self._own_state_dir = state_dir is None
        self.state_dir = (Path(tempfile.mkdtemp(prefix="kstream-test-")) if state_dir is None
                          else Path(state_dir))
        self.stats = EngineStats()
        self.kafka = FakeKafka(self.partition_count)
        """The in-memory cluster: logs, group offsets, and `kafka.faults` to inject errors."""
        self.kafka.on_append.append(self._on_append)
        self.kafka.on_visible.append(self._on_visible)
        self._transactional_id = (f"{application_id}-test-driver"
                                  if processing_guarantee == EXACTLY_ONCE else None)
        self._producer = FakeProducer(self.kafka, self._transactional_id)
        self._consumer = FakeConsumer(self.kafka, application_id)
        self._collector = KafkaRecordCollector(cast(Producer, self._producer), self.stats,
                                               self.partition_count,
                                               transactional=self._transactional_id is not None)
        self.committer = make_committer(processing_guarantee, cast(Consumer, self._consumer),
                                        cast(Producer, self._producer), self._collector,
                                        self.stats, COMMIT_TIMEOUT_S)
        # Global stores: piped records (and committed sink writes) apply at once, as if the
        # engine's global consumer had just read them.
        self._globals = GlobalStateMaintainer(self.topology, self.state_dir)
        self._global_topics = set(self.topology.global_topics)
        self._tasks: dict[tuple[int, int], Task] = {}
        self._ordered_tasks: list[Task] = []  # by (sub-topology, partition), as committed
        # topic -> per-partition task handler, as the engine binds them on assignment
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}
        try:
            self._create_tasks()
            self.committer.start()
        except BaseException:
            self._close(commit=False)
            raise

    def _check_topics(self, partitions: dict[str, int]) -> dict[str, int]:
        """The engine's start-up checks (kstream.runtime.topics) on the driver's partition map:
        internal topics sized from their inputs, co-partitioned inputs of equal size. Returns
        the partition count of every topic the topology names; others have one partition."""
        topology = self.topology
        internal = topology.internal_topics
        user = dict.fromkeys(topology.source_topics + topology.sink_topics()
                             + topology.global_topics)
        counts = {t: partitions.get(t, 1) for t in user if t not in internal}
        wanted = topics.internal_partitions(topology, counts)
        for name, count in wanted.items():
            if name in partitions and partitions[name] != count:
                # What ensure_topics says of an existing internal topic of another size.
                raise MissingTopicsError(
                    f"internal topic {name} has {partitions[name]} partitions but its inputs "
                    f"have {count}: the input topics changed size. Reset the application "
                    f"(delete its internal topics and state directory) to rebuild it.")
        counts.update(wanted)
        topics.check_copartitioning(topology, counts)
        return {**partitions, **counts}

    def _create_tasks(self) -> None:
        for sub in self._subtopologies:
            count = max(self.partition_count(t) for t in sub.source_topics)
            for partition in range(count):
                self._tasks[(sub.index, partition)] = build_task(
                    self.application_id, self.topology, sub, partition, self._collector,
                    self.state_dir, self._clock, fusion=self.fusion,
                    check_shared_values=self.check_shared_values,
                    global_stores=self._globals.stores)
                self._check_round_trips(self._tasks[(sub.index, partition)])
        self._bind_handlers()

    def _check_round_trips(self, task: Task) -> None:
        for store in task.stores.values():
            kv = getattr(store, "kv", store)  # window and session stores wrap a KeyValueStore
            if isinstance(kv, KeyValueStore):
                kv.check_round_trip = self.check_store_round_trip

    def _bind_handlers(self) -> None:
        self._ordered_tasks = [self._tasks[key] for key in sorted(self._tasks)]
        self._handlers = {}
        for sub in self._subtopologies:
            for topic in sub.source_topics:
                self._handlers[topic] = [self._tasks[(sub.index, p)].handler(topic)
                                         for p in range(self.partition_count(topic))]

    # -- topics --------------------------------------------------------------------------------
    def input_topic(self, name: str, key_serde: Any = None, value_serde: Any = None, *,
                    start_timestamp_ms: int | None = None, advance_ms: int = 0) -> TestInputTopic:
        """A writer for source topic `name` (or a global table's topic: its records update
        the global store at once); serdes as in `serdes.resolve` (None: the driver's default
        serde for that part, else raw bytes)."""
        if name not in self._handlers and name not in self._global_topics:
            raise ValueError(f"{name!r} is not a source topic of the topology; source "
                             f"topics: {sorted([*self._handlers, *self._global_topics])}")
        start = self._wall_clock_ms if start_timestamp_ms is None else start_timestamp_ms
        key_serde, value_serde = self._or_defaults(key_serde, value_serde)
        return TestInputTopic(self, name, resolve(key_serde), resolve(value_serde), start,
                              advance_ms)

    def output_topic(self, name: str, key_serde: Any = None,
                     value_serde: Any = None) -> TestOutputTopic:
        """A reader of what is visible in `name` (sinks, repartition topics, changelogs, the
        dead-letter topic): committed records under exactly_once, else everything sent.
        Serdes as in `input_topic`."""
        written = self.output_topics
        if written is not None and name not in written:
            raise ValueError(f"{name!r} is not written by the topology; it writes: "
                             f"{sorted(written)}")
        key_serde, value_serde = self._or_defaults(key_serde, value_serde)
        return TestOutputTopic(self, name, resolve(key_serde), resolve(value_serde))

    def _or_defaults(self, key_serde: Any, value_serde: Any) -> tuple[Any, Any]:
        key_default, value_default = self._default_serdes
        return (key_default if key_serde is None else key_serde,
                value_default if value_serde is None else value_serde)

    @property
    def output_topics(self) -> set[str] | None:
        """Every topic the topology may write, or None when a sink picks topics per record."""
        topology = self.topology
        if any(isinstance(n, SinkNode) and not isinstance(n.topic, str)
               for n in topology.nodes.values()):
            return None
        # The dead-letter topic always: a test may check that nothing went there.
        return {*topology.sink_topics(), *topology.internal_topics, self.dlq_topic}

    def partition_count(self, topic: str) -> int:
        """Partitions of `topic` in the driver's cluster: as given in `partitions`, internal
        topics sized from their inputs, any other topic 1."""
        return self._partitions.get(topic, 1)

    def committed_offsets(self, topic: str) -> dict[int, int]:
        """The application's committed offset per partition of `topic` (-1001 when none), as
        `KafkaCluster.committed_offsets(application_id, topic)` reads them from a broker."""
        return self.kafka.committed_offsets(self.application_id, topic)

    # -- state and time ------------------------------------------------------------------------
    @property
    def late_records(self) -> int:
        """Records windowed operators dropped as too late (each operator counts its own)."""
        return self._late_retired + sum(task.dropped_late for task in self._tasks.values())

    @property
    def skipped_records(self) -> dict[str, int]:
        """Records operators skipped, by reason: "null_key" (aggregations, joins, tables),
        "null_value" (aggregations). Each skip is also logged (rate-limited)."""
        counts = dict(self._skipped_retired)
        for task in self._tasks.values():
            for reason, count in task.skipped.items():
                counts[reason] = counts.get(reason, 0) + count
        return {reason: counts.get(reason, 0) for reason in SKIP_REASONS}

    def get_store(self, name: str, partition: int = 0) -> Any:
        """The store object that `build_task` created for `name` in the given partition's task
        (a global store: the one instance-wide store, whatever `partition`)."""
        if name in self._globals.stores:
            return self._globals.stores[name]
        for sub in self._subtopologies:
            if name in sub.stores:
                task = self._tasks.get((sub.index, partition))
                if task is None:
                    raise KeyError(f"store {name!r} has no partition {partition}")
                return task.stores[name]
        known = sorted(s for sub in self._subtopologies for s in sub.stores)
        raise KeyError(f"unknown store {name!r}; stores: {known}")

    def _clock(self) -> int:
        return self._wall_clock_ms

    @property
    def wall_clock_ms(self) -> int:
        """The clock the tasks see; it moves only through `advance_wall_clock`."""
        return self._wall_clock_ms

    def advance_wall_clock(self, ms: int) -> None:
        """Move the clock and fire due wall-clock punctuators on every task (then commit)."""
        if ms < 0:
            raise ValueError(f"the wall clock cannot go back ({ms} ms)")
        self._check_open()
        self._wall_clock_ms += ms
        self._guarded(self._punctuate, redo=False)
        if self.commit_every is not None and self.committer.dirty:
            self._guarded(self._commit, redo=True)

    def commit(self) -> None:
        """The engine's commit through its committer (kstream.runtime.commit): outputs,
        changelogs and the processed records' offsets become durable together."""
        self._check_open()
        self._guarded(self._commit, redo=True)

    @property
    def stopped(self) -> BaseException | None:
        """The error that stopped the driver (a RecordError under error_policy="fail")."""
        return self._stopped

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is pending, close the tasks and remove the temporary state directory."""
        self._close(commit=True)

    def _close(self, commit: bool) -> None:
        if self._closed:
            return
        try:
            if commit and self._stopped is None and self.committer.dirty:
                self._guarded(self._commit, redo=True)
        finally:
            self._closed = True
            try:
                if self.committer.dirty:  # an error: nothing uncommitted may count
                    self._abort_quietly()
                self.committer.close()
            finally:
                for key in sorted(self._tasks):
                    self._tasks[key].close()
                self._tasks.clear()
                self._globals.close()
                if self._own_state_dir:
                    shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> TopologyTestDriver:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._close(commit=exc_type is None)

    # -- processing ----------------------------------------------------------------------------
    def _pipe(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
              timestamp: int, headers: Headers | None) -> None:
        self._check_open()
        count = self.partition_count(topic)
        if partition is None:
            partition = self.kafka.choose_partition(topic, key, count)
        elif not 0 <= partition < count:
            raise ValueError(f"partition {partition} of {topic} does not exist "
                             f"({count} partitions)")
        if topic in self._global_topics:  # no task reads it: the global store takes it now
            self._globals.apply([self.kafka.append(topic, partition, key, value, timestamp,
                                                   headers)])
            return
        # The test's own producer is not transactional: the record is committed at once.
        self._interval.append(self.kafka.append(topic, partition, key, value, timestamp,
                                                headers))
        self._guarded(self._process_roots, redo=False)
        self._uncommitted += 1
        if self.commit_every is not None and self._uncommitted >= self.commit_every:
            self._guarded(self._commit, redo=True)

    def _process_roots(self) -> None:
        """Process the interval's roots not processed yet, in order."""
        interval = self._interval
        for index in range(self._roots_done, len(interval)):
            try:
                self._process([interval[index]])
            except _Failed as failed:
                failed.index = index
                raise
            self._roots_done = index + 1

    def _punctuate(self) -> None:
        """Like the engine's loop: due wall-clock punctuators run inside the transaction."""
        self._process_roots()
        due = [task for task in self._ordered_tasks if task.wall_clock_due()]
        if not due:
            return
        self.committer.before_batch([])
        for task in due:
            task.punctuate_wall_clock()
        roots, self._fed_back = self._fed_back, []
        try:
            self._process(roots)
        except _Failed as failed:
            failed.index = len(self._interval)  # after every piped record: replay them all
            raise

    def _process(self, roots: list[FakeMessage],
                 stop_before: int | None = None) -> list[FakeMessage]:
        """Process `roots` and what they feed back, depth-first: a record's fed-back outputs
        go before its siblings, so order depends only on the input, and a task is never
        re-entered mid-record. With `stop_before`, stop at that ordinal (see `_Failed`) and
        return the records not processed, in processing order."""
        stack = roots[::-1]
        ordinal = 0
        handlers = self._handlers
        consumer = self._consumer
        consumed = self._consumed
        before_batch = self.committer.before_batch
        at_most_once = self.processing_guarantee == AT_MOST_ONCE
        while stack:
            msg = stack.pop()
            # Each record is a batch of one: consumed, then the committer's pre-batch step
            # (begin the transaction; under at-most-once, commit the offsets first).
            consumer.consumed(msg)
            consumed.add((msg.topic(), msg.partition()))
            before_batch(consumer.position(self._assignment) if at_most_once else [])
            if ordinal == stop_before:
                return [msg, *reversed(stack)]
            ordinal += 1
            self.stats.records_in += 1
            try:
                handlers[msg.topic()][msg.partition()](msg)
            except RecordError as err:
                action = handle_bad_record(
                    err, msg, error_policy=self.error_policy,
                    guarantee=self.processing_guarantee, dlq_topic=self.dlq_topic,
                    collector=self._collector, stats=self.stats, log=log)
                if action is not BadRecordAction.DEAD_LETTERED:
                    self._fed_back = []  # the failed record's outputs are never processed
                    raise _Failed(err, action, ordinal - 1, [msg, *reversed(stack)]) from err
            if self._fed_back:
                stack.extend(reversed(self._fed_back))
                self._fed_back = []
        return []

    def _on_append(self, msg: FakeMessage) -> None:
        if msg.topic() in self._handlers:
            self._fed_back.append(msg)

    def _on_visible(self, msgs: list[FakeMessage]) -> None:
        outputs = self._outputs
        for msg in msgs:
            outputs[msg.topic()].append(msg)
        if self._global_topics:
            self._globals.apply([m for m in msgs if m.topic() in self._global_topics])

    # -- commit --------------------------------------------------------------------------------
    def _commit(self, overrides: dict[tuple[str, int], int] | None = None) -> None:
        """The engine's `_commit`: consumed positions (or `overrides`, the first records not
        processed) with each task's stream time as metadata, through the committer. Only
        partitions consumed since the last commit: the others' committed offsets stand."""
        offsets = []
        moved = [TopicPartition(t, p) for t, p in sorted(self._consumed.union(overrides or ()))]
        for tp in self._consumer.position(moved):
            offset = tp.offset
            if overrides and (tp.topic, tp.partition) in overrides:
                offset = overrides[(tp.topic, tp.partition)]
            if offset < 0:
                continue
            task = self._tasks.get((self._sub_of_topic[tp.topic], tp.partition))
            stream_time = task.stream_time if task is not None else -1
            offsets.append(TopicPartition(tp.topic, tp.partition, offset,
                                          metadata=orjson.dumps({"st": stream_time}).decode()))
        self.committer.commit(self._ordered_tasks, offsets)
        self._consumed.clear()
        # What the commit itself fed back (cache flushes) starts the next interval.
        self._interval, self._fed_back = self._fed_back, []
        self._roots_done = 0
        self._uncommitted = 0

    # -- failures ------------------------------------------------------------------------------
    def _guarded(self, op: Callable[[], None], *, redo: bool) -> None:
        """Run `op` the way the engine runs its loop: a bad record under "fail" stops (see
        `_stop_at`); a Kafka error the engine recovers from is recovered from the same way
        (abort or replace the producer, rewind, replay the interval; `redo` runs `op` again
        after the replay, for a commit); anything else stops the driver."""
        step = op
        for _ in range(RECOVERIES_WITHOUT_COMMIT):
            try:
                step()
                return
            except _Failed as failed:
                self._stop_at(failed)
            except Recoverable as exc:
                log.warning("event=recover error=%s", exc)
                try:
                    self._abort_and_rewind(exc)
                except BaseException as again:
                    self._halt(again)
                    raise
                step = self._replay_then(op) if redo else self._replay_all
            except BaseException as exc:
                self._halt(exc)
                raise
        error = FatalError(f"{RECOVERIES_WITHOUT_COMMIT} recoveries without a successful "
                           "commit in between")
        self._halt(error)
        raise error

    def _replay_all(self) -> None:
        self._replay(None)

    def _replay_then(self, op: Callable[[], None]) -> Callable[[], None]:
        def step() -> None:
            self._replay(None)
            op()
        return step

    def _stop_at(self, failed: _Failed) -> NoReturn:
        """error_policy="fail", as the engine: at-most-once commits the offsets up to the failed
        record; otherwise abort, replay up to (not including) the failed record, commit. Then
        the driver is stopped and the record's error raised."""
        err = failed.err
        try:
            if failed.action is BadRecordAction.STOP:
                self._commit(overrides=_first_offsets(failed.remaining))
            else:
                self._replay_up_to(failed)
        except BaseException as exc:
            self._halt(exc)
            raise
        self._stopped = err
        raise err

    def _replay_up_to(self, failed: _Failed) -> None:
        for _ in range(RECOVERIES_WITHOUT_COMMIT):
            try:
                self._abort_and_rewind(None)
                remaining = self._replay((failed.index, failed.ordinal))
                self._commit(overrides=_first_offsets(remaining))
                return
            except _Failed as earlier:
                # Failed before the stop point this time (a processor that is not
                # deterministic): stop there instead, as the engine stops at either.
                failed = earlier
            except Recoverable as exc:
                log.warning("event=recover error=%s", exc)
        raise FatalError(f"{RECOVERIES_WITHOUT_COMMIT} recoveries while stopping at a bad record")

    def _abort_and_rewind(self, error: KStreamError | None) -> None:
        """The engine's recovery: abort the interval (or replace a producer that cannot abort
        or was fenced), then every task back to its committed offsets and state."""
        tasks = self._ordered_tasks
        replace = isinstance(error, TaskMigratedError) or (
            isinstance(error, AbortableError) and error.producer_unusable)
        if not replace:
            try:
                self.committer.abort(tasks, after_error=error is not None)
            except AbortableError as failed:  # the producer cannot abort: replace it
                replace = failed.producer_unusable
                if not replace:
                    raise
        if replace:
            for task in tasks:
                task.discard_uncommitted()
            self._replace_producer()
        if error is not None:
            self.stats.recoveries += 1
        self._rewind()

    def _replace_producer(self) -> None:
        """A new producer with the same transactional id: its init_transactions fences the
        old one and aborts the old one's open transaction (as with the engine)."""
        self._producer.purge()  # its reports are void
        self._producer = FakeProducer(self.kafka, self._transactional_id)
        self._collector.rebind(cast(Producer, self._producer))
        self.committer.replace_clients(cast(Consumer, self._consumer),
                                       cast(Producer, self._producer))
        self.committer.start()

    def _rewind(self) -> None:
        """The engine's `_rewind`: fresh tasks (processor state is not durable) on the same
        stores, whose uncommitted writes were discarded, so they hold committed state; positions
        and stream times from the committed offsets."""
        self._fed_back = []
        for key, old in list(self._tasks.items()):
            # Not old.close(): that would close the stores the new task keeps.
            self._late_retired += old.dropped_late
            for reason, count in old.skipped.items():
                self._skipped_retired[reason] = self._skipped_retired.get(reason, 0) + count
            self._tasks[key] = Task(self.application_id, self.topology,
                                    self._subtopologies[key[0]], key[1], self._collector,
                                    old.stores, self._clock, fusion=self.fusion,
                                    check_shared_values=self.check_shared_values,
                                    global_stores=self._globals.stores)
        self._bind_handlers()
        committed = self._consumer.committed(self._assignment)
        for tp in committed:
            # No committed offset: the driver's topics are read from the beginning.
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
            task = self._tasks.get((self._sub_of_topic[tp.topic], tp.partition))
            if task is not None and tp.metadata:
                task.stream_time = max(task.stream_time,
                                       int(orjson.loads(tp.metadata).get("st", -1)))

    def _replay(self, stop: tuple[int, int] | None) -> list[FakeMessage]:
        """Process the interval's roots again, after `_rewind` (as the engine consumes again
        from the committed offsets); with `stop` (index, ordinal) stop at that record and
        return what was not processed."""
        start = {(tp.topic, tp.partition): tp.offset
                 for tp in self._consumer.position(self._assignment)}
        for index, msg in enumerate(self._interval):
            if msg.offset() < start[(msg.topic(), msg.partition())]:
                continue  # at-most-once committed it before processing: never again
            try:
                if stop is not None and index == stop[0]:
                    return self._process([msg], stop_before=stop[1])
                self._process([msg])
            except _Failed as failed:
                failed.index = index
                raise
        self._roots_done = len(self._interval)
        return []

    def _halt(self, error: BaseException) -> None:
        """Anything the engine does not recover from stops it, uncommitted work aborted."""
        if self._stopped is None:
            self._stopped = error
        self._fed_back = []
        if self.committer.dirty:
            self._abort_quietly()

    def _abort_quietly(self) -> None:
        try:
            self.committer.abort(self._ordered_tasks, after_error=True)
        except (KStreamError, KafkaException) as exc:
            log.warning("event=abort_failed error=%s", exc)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the TopologyTestDriver is closed")
        stopped = self._stopped
        if isinstance(stopped, RecordError):
            raise RuntimeError(
                f"the TopologyTestDriver stopped after a failed record at {stopped.topic}"
                f"[{stopped.partition}]@{stopped.offset} (error_policy={self.error_policy!r}); "
                f"it committed everything before that record. Create a new driver to go on")
        if stopped is not None:
            raise RuntimeError(f"the TopologyTestDriver stopped after an error: {stopped!r}")


def _first_offsets(msgs: list[FakeMessage]) -> dict[tuple[str, int], int]:
    """Per partition, the lowest offset not processed: where a restart must begin."""
    first: dict[tuple[str, int], int] = {}
    for msg in msgs:
        key = (msg.topic(), msg.partition())
        if key not in first or msg.offset() < first[key]:
            first[key] = msg.offset()
    return first


class TestInputTopic:
    """Serializes and pipes records into one source topic (like Kafka Streams' TestInputTopic).

    Records without a timestamp get the topic's current time, which then moves `advance_ms`.
    """

    __test__ = False

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde,
                 value_serde: Serde, start_timestamp_ms: int, advance_ms: int) -> None:
        if advance_ms < 0:
            raise ValueError(f"advance_ms must be >= 0, got {advance_ms}")
        self._driver = driver
        self.topic = topic
        self._key_serde = key_serde
        self._value_serde = value_serde
        self._ctx = SerdeContext(topic=topic)
        self.current_time_ms = start_timestamp_ms
        self.advance_ms = advance_ms

    def pipe(self, key: Any, value: Any, timestamp: int | None = None,
             headers: HeadersLike | None = None, partition: int | None = None) -> None:
        """Send one record and process it (and whatever it feeds back) to completion."""
        if timestamp is None:
            timestamp = self.current_time_ms
            self.current_time_ms += self.advance_ms
        hdrs = _headers(headers)
        ctx = self._ctx
        ctx.headers = hdrs
        ctx.is_key = True
        key_bytes = self._key_serde.serialize(key, ctx)
        ctx.is_key = False
        value_bytes = self._value_serde.serialize(value, ctx)
        self._driver._pipe(self.topic, partition, key_bytes, value_bytes, timestamp, hdrs)

    def pipe_many(self, records: Iterable[tuple[Any, Any] | tuple[Any, Any, int]]) -> None:
        """Pipe `(key, value)` or `(key, value, timestamp)` tuples in order."""
        pipe = self.pipe
        for item in records:
            pipe(*item)

    def __repr__(self) -> str:
        return f"TestInputTopic({self.topic!r})"


class TestOutputTopic:
    """Reads (and consumes) what was sent to one topic, deserialized, in send order."""

    __test__ = False

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde,
                 value_serde: Serde) -> None:
        self.topic = topic
        self._queue = driver._outputs[topic]  # shared by every reader of this topic, like KS
        self._key_serde = key_serde
        self._value_serde = value_serde

    def read_record(self) -> Record:
        """The next record; raises LookupError when none is left."""
        if not self._queue:
            raise LookupError(f"no more records in {self.topic!r}")
        msg = self._queue.popleft()
        headers = msg.headers()
        ctx = SerdeContext(self.topic, msg.partition(), msg.offset(), headers, True)
        key = self._key_serde.deserialize(msg.key(), ctx)
        ctx.is_key = False
        value = self._value_serde.deserialize(msg.value(), ctx)
        return Record(key, value, msg.timestamp()[1], headers, self.topic, msg.partition(),
                      msg.offset())

    def read_key_value(self) -> tuple[Any, Any]:
        """The next record's (key, value); LookupError when none is left."""
        record = self.read_record()
        return record.key, record.value

    def read_value(self) -> Any:
        """The next record's value; LookupError when none is left."""
        return self.read_record().value

    def read_records_to_list(self) -> list[Record]:
        """Every record left, in send order (with timestamp, headers, partition, offset)."""
        return [self.read_record() for _ in range(len(self._queue))]

    def read_key_values_to_list(self) -> list[tuple[Any, Any]]:
        """Every (key, value) left, in send order."""
        return [(r.key, r.value) for r in self.read_records_to_list()]

    def read_values_to_list(self) -> list[Any]:
        """Every value left, in send order."""
        return [r.value for r in self.read_records_to_list()]

    def read_key_values_to_dict(self) -> dict[Any, Any]:
        """The final table state: the latest value per key; a tombstone (None) deletes it."""
        table: dict[Any, Any] = {}
        for record in self.read_records_to_list():
            if record.key is None:
                raise ValueError(f"{self.topic!r} has a record with a null key at "
                                 f"partition {record.partition} offset {record.offset}")
            if record.value is None:
                table.pop(record.key, None)
            else:
                table[record.key] = record.value
        return table

    def is_empty(self) -> bool:
        """True when every record sent so far has been read."""
        return not self._queue

    def queue_size(self) -> int:
        """How many records are left to read."""
        return len(self._queue)

    def __repr__(self) -> str:
        return f"TestOutputTopic({self.topic!r}, queued={len(self._queue)})"


def _headers(headers: HeadersLike | None) -> Headers | None:
    """Headers as confluent-kafka delivers them: a list of (str, bytes) pairs, or None."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]
