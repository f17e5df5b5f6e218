"""The engine loop: consume a batch, route each record to its task, commit on a tick.

One loop per process, single-threaded: rebalance callbacks run inside `consume()`, so no lock
is needed around tasks, the transaction or the consumer's positions.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from kstream.config import AT_MOST_ONCE, ERROR_DEAD_LETTER, AppConfig
from kstream.errors import (
    FatalError,
    KStreamError,
    ProducerFencedError,
    RecordError,
    TaskMigratedError,
    dead_letter_headers,
    producer_error,
)
from kstream.runtime import topics
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.commit import Committer, TransactionAborted, make_committer
from kstream.runtime.identity import InstanceIdentity
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import Task, build_task
from kstream.state import restore_stores
from kstream.topology import Topology

log = logging.getLogger("kstream.engine")

FAILURE_REPLAY_DEADLINE_S = 120.0
TaskFactory = Callable[[int, int], Task]


class Engine:
    """Runs one App instance: group membership, tasks, processing and commits."""

    def __init__(self, topology: Topology, config: AppConfig) -> None:
        self.topology = topology.bind(config.application_id)
        self.config = config
        self.stats = EngineStats()
        self.subtopologies = topology.subtopologies()
        self._sub_of_topic = {t: s for s in self.subtopologies for t in s.source_topics}
        self.tasks: dict[tuple[int, int], Task] = {}
        self._handlers: dict[str, dict[int, Callable[[Message], None]]] = {}
        self._assignment: list[TopicPartition] = []
        self._stop = False
        self._fail_at: dict[tuple[str, int], int] = {}
        self._pending_failure: RecordError | None = None
        self._failure_deadline = 0.0
        self._fencings: list[float] = []
        self._fenced_during_revoke: ProducerFencedError | None = None
        self.identity: InstanceIdentity | None = None
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.committer: Committer | None = None
        self.collector: KafkaRecordCollector | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current batch, commit, leave the group. Safe from a signal handler."""
        self._stop = True

    def run(self) -> None:
        self.start()
        clean = False
        try:
            while not self._stop:
                try:
                    self.run_once()
                except ProducerFencedError as exc:
                    self._recover_from_fencing(exc)
            clean = True
        finally:
            self.shutdown(commit=clean)

    def start(self) -> None:
        cfg = self.config
        self.identity = InstanceIdentity(cfg.state_dir, cfg.application_id)
        topics.ensure_topics(self.topology, cfg)
        self.producer = Producer(self._producer_config())
        self.collector = KafkaRecordCollector(self.producer, self.stats, self._partition_count)
        self.consumer = Consumer(self._consumer_config())
        self.committer = make_committer(cfg.processing_guarantee, self.consumer, self.producer,
                                        self.collector, self.stats,
                                        cfg.transaction_timeout_ms / 1000 * 3)
        self.committer.start()
        self.consumer.subscribe(self.topology.source_topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._next_commit = time.monotonic() + cfg.effective_commit_interval_ms / 1000
        log.info("event=start application_id=%s guarantee=%s transactional_id=%s topics=%s",
                 cfg.application_id, cfg.processing_guarantee,
                 self.identity.transactional_id(cfg.application_id)
                 if cfg.exactly_once else "-", self.topology.source_topics)

    def shutdown(self, commit: bool = True) -> None:
        """Leave the group. Commit only on a clean stop: after an error, uncommitted work is
        aborted (exactly-once) or redone by the next owner (at-least-once)."""
        try:
            if self.consumer is not None and self.committer is not None:
                try:
                    if not commit:
                        # Marked first: the revocation inside consumer.close() must not commit.
                        self._pending_failure = self._pending_failure or _StopWithoutCommit()
                        try:
                            self.committer.abort(list(self.tasks.values()))
                        except (KStreamError, KafkaException) as exc:  # ours matters more
                            log.warning("event=abort_failed error=%s", exc)
                    elif self.committer.dirty:
                        self._commit()
                finally:
                    self.consumer.close()  # revokes (commits nothing new) and leaves the group
            if self.committer is not None:
                try:
                    self.committer.close()
                except KStreamError as exc:
                    if commit:
                        raise
                    log.warning("event=close_failed error=%s", exc)  # the first error matters
        finally:
            for task in self.tasks.values():
                self._retire(task)
            self.tasks.clear()
            if self.identity is not None:
                self.identity.release()
            log.info("event=stop stats=%s", self.stats.snapshot())

    # -- the loop ------------------------------------------------------------------------------
    def run_once(self) -> None:
        assert self.consumer is not None and self.committer is not None
        cfg = self.config
        msgs = self.consumer.consume(cfg.batch_size, cfg.poll_timeout_ms / 1000)
        if msgs:
            self.committer.before_batch(
                self._positions() if cfg.processing_guarantee == AT_MOST_ONCE else [])
            self.stats.records_in += len(msgs)
            start = 0
            try:
                while start < len(msgs):
                    start = self._process_run(msgs, start)
            except _RestartBatch:
                pass  # rewound to the committed offsets: the rest of this batch comes again
        try:
            self.producer.poll(0)  # type: ignore[union-attr]
        except KafkaException as exc:
            raise producer_error(exc, "poll") from exc
        due = [task for task in self.tasks.values() if task.wall_clock_due()]
        if due:
            self.committer.before_batch([])  # punctuators may write: inside the transaction
            for task in due:
                task.punctuate_wall_clock()
        if self._fenced_during_revoke is not None:
            exc, self._fenced_during_revoke = self._fenced_during_revoke, None
            raise exc
        if self._pending_failure is not None and time.monotonic() > self._failure_deadline:
            raise self._pending_failure
        if time.monotonic() >= self._next_commit:
            if self.committer.dirty:
                self._commit()
            self._next_commit = time.monotonic() + cfg.effective_commit_interval_ms / 1000

    def _process_run(self, msgs: list[Message], start: int) -> int:
        """Process msgs[start:]; return where to continue after a handled bad record."""
        if self._fail_at:
            return self._process_until_failure(msgs, start)
        handlers = self._handlers
        i = start
        last_topic, last_partition, handler = None, None, None
        try:
            for i in range(start, len(msgs)):
                msg = msgs[i]
                if msg.error() is not None:
                    self._consumer_error(msg)
                    continue
                topic, partition = msg.topic(), msg.partition()
                if partition != last_partition or topic != last_topic:
                    # Batches come in runs of one partition: look the handler up once per run.
                    last_topic, last_partition = topic, partition
                    handler = handlers.get(topic, {}).get(partition)  # type: ignore[arg-type]
                if handler is None:
                    continue  # fetched before a revoke: the partition's new owner processes it
                handler(msg)
        except RecordError as err:
            self._on_record_error(err, msgs, i)
            return i + 1
        return len(msgs)

    def _process_until_failure(self, msgs: list[Message], start: int) -> int:
        """Replay after an abort, stopping exactly at the record that failed before."""
        for i in range(start, len(msgs)):
            msg = msgs[i]
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            tp = (msg.topic(), msg.partition())
            if tp in self._fail_at and (msg.offset() or 0) >= self._fail_at[tp]:
                self._commit(overrides=_first_offsets(msgs[i:]))
                assert self._pending_failure is not None
                raise self._pending_failure
            handler = self._handlers.get(tp[0], {}).get(tp[1])  # type: ignore[arg-type]
            if handler is None:
                continue
            try:
                handler(msg)
            except RecordError as err:
                self._on_record_error(err, msgs, i)
                return i + 1
        return len(msgs)

    # -- bad records ---------------------------------------------------------------------------
    def _on_record_error(self, err: RecordError, msgs: list[Message], index: int) -> None:
        self.stats.errors += 1
        msg = msgs[index]
        if self.config.error_policy == ERROR_DEAD_LETTER:
            log.warning("event=dead_letter topic=%s partition=%s offset=%s stage=%s error=%r",
                        err.topic, err.partition, err.offset, err.stage, str(err.cause))
            assert self.collector is not None
            self.collector.send(self.config.dlq_topic, msg.key(), msg.value(),
                                msg.timestamp()[1], dead_letter_headers(err, msg.headers()))
            self.stats.dead_lettered += 1
            return
        log.error("event=record_error policy=fail topic=%s partition=%s offset=%s stage=%s "
                  "error=%r", err.topic, err.partition, err.offset, err.stage, str(err.cause))
        if self.config.processing_guarantee != AT_MOST_ONCE:
            # Effects of earlier records share the uncommitted state (and, under exactly-once,
            # the open transaction) with whatever the failed record did before it raised:
            # abort, replay up to the failed record, commit, then stop.
            if self._pending_failure is None:
                self._pending_failure = err
                self._failure_deadline = time.monotonic() + FAILURE_REPLAY_DEADLINE_S
            self._fail_at[(err.topic, err.partition)] = err.offset
            self._abort_and_rewind()
            raise _RestartBatch()
        self._commit(overrides=_first_offsets(msgs[index:]))
        raise err

    def _consumer_error(self, msg: Message) -> None:
        err: KafkaError = msg.error()  # type: ignore[assignment]
        if err.fatal():
            raise FatalError(f"consumer: {err}")
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise FatalError(f"consumer: topic {msg.topic()} no longer exists ({err})")
        log.warning("event=consumer_error error=%s", err)

    # -- commit --------------------------------------------------------------------------------
    def _positions(self) -> list[TopicPartition]:
        if not self._assignment:
            return []
        return self.consumer.position(self._assignment)  # type: ignore[union-attr]

    def _commit(self, overrides: dict[tuple[str, int], int] | None = None) -> None:
        assert self.committer is not None
        offsets = []
        for tp in self._positions():
            offset = tp.offset
            if overrides and (tp.topic, tp.partition) in overrides:
                offset = overrides[(tp.topic, tp.partition)]
            if offset < 0:
                continue
            task = self.tasks.get((self._sub_of_topic[tp.topic].index, tp.partition))
            stream_time = task.stream_time if task is not None else -1
            offsets.append(TopicPartition(tp.topic, tp.partition, offset,
                                          metadata=orjson.dumps({"st": stream_time}).decode()))
        try:
            self.committer.commit(list(self.tasks.values()), offsets)
        except TransactionAborted:
            self._rewind()
        except ProducerFencedError:
            raise  # handled by the loop: rejoin with a new producer
        except TaskMigratedError as exc:
            log.warning("event=task_migrated error=%s", exc)
            self._recreate_tasks()

    def _recover_from_fencing(self, exc: ProducerFencedError) -> None:
        """Drop every task without committing, replace the producer and rejoin the group.

        The fenced transaction is void on the broker, so its outputs and offsets never count;
        the group hands partitions out again and processing resumes from committed offsets.
        """
        now = time.monotonic()
        self._fencings = [t for t in self._fencings if now - t < 60] + [now]
        if len(self._fencings) > 3:
            raise FatalError(f"fenced {len(self._fencings)} times in a minute: another "
                             "instance keeps using this instance's transactional.id") from exc
        log.warning("event=fenced error=%s action=rejoin", exc)
        assert self.consumer is not None and self.committer is not None
        assert self.collector is not None
        for task in self.tasks.values():
            task.discard_uncommitted()
        self._close_tasks()
        self.committer.dirty = False
        self.committer.in_transaction = False  # type: ignore[attr-defined]
        # Fresh clients, as after a restart: closing the consumer leaves the group (its
        # revocation commits nothing: nothing is dirty), the new one joins again.
        old_consumer, old_producer = self.consumer, self.producer
        old_consumer.close()
        if old_producer is not None:
            with contextlib.suppress(KafkaException):  # fenced: its queue is void anyway
                old_producer.purge()
        self.producer = Producer(self._producer_config())
        self.collector.rebind(self.producer)
        self.consumer = Consumer(self._consumer_config())
        self.committer.consumer = self.consumer
        self.committer.replace_producer(self.producer)  # type: ignore[attr-defined]
        self.consumer.subscribe(self.topology.source_topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _abort_and_rewind(self) -> None:
        assert self.committer is not None
        self.committer.abort(list(self.tasks.values()))
        self._rewind()

    def _rewind(self) -> None:
        """Back to the committed offsets with fresh tasks (processor state is not durable)."""
        self._recreate_tasks()
        if not self._assignment:
            return
        committed = self.consumer.committed(self._assignment, timeout=30)  # type: ignore[union-attr]
        reset = OFFSET_BEGINNING if self.config.auto_offset_reset == "earliest" else OFFSET_END
        for tp in committed:
            target = tp.offset if tp.offset >= 0 else reset
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, target))  # type: ignore[union-attr]
        self._restore_stream_times(committed)
        log.info("event=rewind partitions=%d", len(committed))

    # -- rebalance -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self._assignment = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self._create_tasks()
        if partitions:
            committed = consumer.committed(self._assignment, timeout=30)
            self._restore_stream_times(committed)
        log.info("event=assign partitions=%s", _describe(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            if self.committer is not None and self.committer.dirty and \
                    self._pending_failure is None:
                self._commit()
            elif self.committer is not None:
                self.committer.abort(list(self.tasks.values()))
        except ProducerFencedError as exc:
            # Nothing of ours can be committed any more; the next owner redoes it.
            log.warning("event=revoke_fenced error=%s", exc)
            self._fenced_during_revoke = exc
        finally:
            self._close_tasks()
        log.info("event=revoke partitions=%s", _describe(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else owns these now: never commit work done for them.
        if self.committer is not None:
            self.committer.abort(list(self.tasks.values()))
        self._close_tasks()
        log.warning("event=lost partitions=%s", _describe(partitions))

    def _create_tasks(self) -> None:
        assert self.collector is not None
        numbers: dict[int, set[int]] = defaultdict(set)
        for tp in self._assignment:
            numbers[self._sub_of_topic[tp.topic].index].add(tp.partition)
        for sub in self.subtopologies:
            for partition in sorted(numbers.get(sub.index, ())):
                self.tasks[(sub.index, partition)] = self.new_task(sub.index, partition)
        self._restore([t for t in self.tasks.values() if t.stores])
        self._handlers = {}
        for tp in self._assignment:
            task = self.tasks[(self._sub_of_topic[tp.topic].index, tp.partition)]
            self._handlers.setdefault(tp.topic, {})[tp.partition] = task.handler(tp.topic)

    def _restore(self, tasks: list[Task]) -> None:
        """Bring the tasks' stores to the end of their changelogs before any processing."""
        stores = [store for task in tasks for store in task.stores.values()]
        if not stores:
            return
        client = {k: v for k, v in self.config.consumer_config.items()
                  if k.startswith(("security.", "sasl.", "ssl.", "client."))}
        report = restore_stores(self.config.bootstrap_servers, stores,
                                self.config.restore_timeout_ms / 1000, client)
        self.stats.restored += report.records

    def new_task(self, sub_index: int, partition: int) -> Task:
        assert self.collector is not None and self.identity is not None
        return build_task(self.config.application_id, self.topology,
                          self.subtopologies[sub_index], partition, self.collector,
                          self.identity.directory)

    def _retire(self, task: Task) -> None:
        self.stats.late_records += task.dropped_late  # keep counts across task lifetimes
        task.close()

    def _close_tasks(self) -> None:
        for task in self.tasks.values():
            self._retire(task)
        self.tasks.clear()
        self._handlers = {}
        self._assignment = []

    def _recreate_tasks(self) -> None:
        assignment = self._assignment
        for task in self.tasks.values():
            self._retire(task)
        self.tasks.clear()
        self._assignment = assignment
        self._create_tasks()

    def _restore_stream_times(self, committed: list[TopicPartition]) -> None:
        for tp in committed:
            task = self.tasks.get((self._sub_of_topic[tp.topic].index, tp.partition))
            meta = getattr(tp, "metadata", None)
            if task is None or not meta:
                continue
            try:
                task.stream_time = max(task.stream_time, int(orjson.loads(meta).get("st", -1)))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                continue

    # -- clients -------------------------------------------------------------------------------
    def _partition_count(self, topic: str) -> int:
        md = self.producer.list_topics(topic, timeout=10).topics.get(topic)  # type: ignore[union-attr]
        if md is None or md.error is not None:
            raise FatalError(f"topic {topic} does not exist (or has no metadata)")
        return len(md.partitions)

    def _producer_config(self) -> dict[str, Any]:
        cfg = self.config
        conf: dict[str, Any] = {
            "bootstrap.servers": cfg.bootstrap_servers,
            "linger.ms": 5,
            # Java clients' partitioner, so keys land where Kafka Streams/Java producers put them.
            "partitioner": "murmur2_random",
            "enable.idempotence": cfg.processing_guarantee != AT_MOST_ONCE,
            **cfg.producer_config,
        }
        if cfg.exactly_once:
            assert self.identity is not None
            conf["transactional.id"] = self.identity.transactional_id(cfg.application_id)
            conf["transaction.timeout.ms"] = cfg.transaction_timeout_ms
        else:
            conf["on_delivery"] = lambda err, msg: self.collector.on_delivery(err, msg)  # type: ignore[union-attr]
            if not any(builder.logging for builder in self.topology.stores.values()):
                # Only failures matter when no changelog offsets are learned from reports;
                # a Python callback per delivered record is the largest at-least-once cost.
                conf["delivery.report.only.error"] = True
        return conf

    def _consumer_config(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "bootstrap.servers": cfg.bootstrap_servers,
            "group.id": cfg.application_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": cfg.auto_offset_reset,
            "isolation.level": "read_committed" if cfg.exactly_once else "read_uncommitted",
            # Range keeps partition N of co-partitioned topics on the same instance.
            "partition.assignment.strategy": "range",
            "session.timeout.ms": cfg.session_timeout_ms,
            "heartbeat.interval.ms": max(500, cfg.session_timeout_ms // 5),
            # Lag comes from librdkafka's statistics: no extra requests, parsed every 10 s.
            "statistics.interval.ms": 10_000,
            "stats_cb": self._on_consumer_stats,
            **cfg.consumer_config,
        }

    def _on_consumer_stats(self, payload: str) -> None:
        try:
            stats = orjson.loads(payload)
            self.stats.lag = sum(
                max(0, p.get("consumer_lag", 0))
                for t in stats.get("topics", {}).values()
                for pid, p in t.get("partitions", {}).items() if pid != "-1")
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            log.debug("unreadable consumer statistics")


class _StopWithoutCommit(Exception):
    """Internal marker: the engine is stopping after an error; revocation must not commit."""


class _RestartBatch(Exception):
    """Internal: the batch's remaining records were discarded by a rewind."""


def _first_offsets(msgs: list[Message]) -> dict[tuple[str, int], int]:
    """Per partition, the offset of the first record not processed (the commit position)."""
    first: dict[tuple[str, int], int] = {}
    for msg in msgs:
        if msg.error() is None:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())  # type: ignore[arg-type]
    return first


def _describe(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
