"""The engine loop: consume a batch, route each record to its task, commit on a tick.

One loop per process, single-threaded: rebalance callbacks run inside `consume()`, so no lock
is needed around tasks, the transaction or the consumer's positions. Failures follow
kstream.runtime.kafka_errors (what each Kafka error means) and kstream.runtime.lifecycle (the
engine's states); recovery from anything but a fatal error ends in the same place: every task
back at its committed offsets and committed state.
"""

from __future__ import annotations

import contextlib
import gc
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
    Producer,
    TopicPartition,
)

from kstream.config import AT_MOST_ONCE, AppConfig
from kstream.errors import (
    AbortableError,
    FatalError,
    InternalError,
    KStreamError,
    ProducerFencedError,
    RecordError,
    TaskMigratedError,
    kafka_failure,
)
from kstream.queries import QueryableTasks
from kstream.runtime import bad_records, topics
from kstream.runtime.client_config import consumer_config, producer_config
from kstream.runtime.clients import KafkaClients
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.commit import Committer, make_committer
from kstream.runtime.fusion import RunHandler
from kstream.runtime.global_state import GlobalStateMaintainer, global_consumer_config
from kstream.runtime.handover import HandOver
from kstream.runtime.identity import InstanceIdentity
from kstream.runtime.kafka_errors import ErrorClass, classify
from kstream.runtime.lifecycle import EngineLifecycle, EngineState
from kstream.runtime.membership import LeaveGroupError, leave_group
from kstream.runtime.meters import EngineMeters
from kstream.runtime.ordering import InputOrderer
from kstream.runtime.outage import OutageWaiter, StopRequested
from kstream.runtime.standby import StandbyReplicas
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import Message as TaskMessage
from kstream.runtime.task import Task, build_task
from kstream.runtime.watchdog import Watchdog
from kstream.state import restore_stores
from kstream.state.errors import RestoreInterrupted
from kstream.topology import Topology

log = logging.getLogger("kstream.engine")

TaskFactory = Callable[[int, int], Task]
FENCINGS_PER_MINUTE = 3
RECOVERIES_WITHOUT_COMMIT = 50
MISSING_TOPIC_GRACE_S = 30.0
CLIENT_LOG_INTERVAL_S = 10.0
HANDOVER_DEADLINE_S = 5.0
_OUTAGE_CODES = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT)
Recoverable = (AbortableError, TaskMigratedError)


class Engine:
    """Runs one App instance: group membership, tasks, processing, commits and recovery."""

    def __init__(self, topology: Topology, config: AppConfig,
                 clients: KafkaClients | None = None) -> None:
        self.topology = topology.bind(config.application_id)
        self.config = config
        self.clients = clients or KafkaClients()
        self.stats = EngineStats()
        self.meters = EngineMeters()  # per-partition counts, latencies (kstream.metrics)
        self.subtopologies = topology.subtopologies()
        self._sub_of_topic = {t: s for s in self.subtopologies for t in s.source_topics}
        # One subscribed topic (a name: librdkafka reads "^..." as a pattern): no other
        # topic's records in any batch, so tasks' run handlers need not check the topic.
        topics = self.topology.source_topics
        self._sole_topic = len(topics) == 1 and not topics[0].startswith("^")
        # Tasks of sub-topologies with several source topics see records in timestamp order.
        self._ordered = config.timestamp_ordering and any(
            len(s.source_topics) > 1 for s in self.subtopologies)
        self._orderer = InputOrderer(config.max_task_idle_ms,
                                     config.buffered_records_per_partition,
                                     lambda tps: self._consumer_call("pause", tps),
                                     lambda tps: self._consumer_call("resume", tps))
        self.queries = QueryableTasks(self.topology)  # what interactive queries may read
        self.tasks: dict[tuple[int, int], Task] = {}
        # Tasks revoked cleanly, kept open for the next assignment: (member id, tasks).
        self._suspended: tuple[str | None, dict[tuple[int, int], Task]] = (None, {})
        self._handlers: dict[str, dict[int, RunHandler]] = {}
        self._assignment: list[TopicPartition] = []
        self._stop = False
        self._leave_group: bool = config.leave_group_on_shutdown
        self.life = EngineLifecycle()
        self._fencings: list[float] = []
        self._recoveries_since_commit = 0
        self._deferred: KStreamError | None = None  # from a rebalance callback
        self._missing_since: dict[str, float] = {}
        self._last_client_log = 0.0
        self._producer_saw_outage = False  # see _renew_producer_after_outage
        self.outage = OutageWaiter(lambda: self._stop, self._set_waiting)
        self.watchdog = Watchdog(config.watchdog_timeout_ms / 1000,
                                 config.shutdown_timeout_ms / 1000, self.request_stop)
        self.identity: InstanceIdentity | None = None
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.committer: Committer | None = None
        self.collector: KafkaRecordCollector | None = None
        self.globals: GlobalStateMaintainer | None = None  # global stores (global tables)
        self.standbys: StandbyReplicas | None = None
        self.handover: HandOver | None = None  # exactly-once + static membership only
        self._held: list[TopicPartition] = []  # moved in, paused until the hand-over is done
        self._next_standby_lag = 0.0

    # -- lifecycle -----------------------------------------------------------------------------
    def request_stop(self, leave_group: bool | None = None) -> None:
        """Finish the current batch, commit, close the consumer. Safe from a signal handler and
        from other threads; the watchdog holds the instance to `shutdown_timeout_ms`.

        A static member keeps its membership (a restart gets its partitions back without a
        rebalance) unless `leave_group` (default: `leave_group_on_shutdown`) says it leaves
        for good; a dynamic member always leaves."""
        if leave_group is not None:
            self._leave_group = leave_group
        self._stop = True
        self.watchdog.stop_requested()

    def run(self, hard_exit_on_shutdown_timeout: bool = False) -> None:
        """Until stopped. Only a FatalError (or a bad record under error_policy="fail") ends
        it early; broker outages of any length are waited out."""
        self.watchdog.start(hard_exit=hard_exit_on_shutdown_timeout)
        clean = False
        try:
            self.start()
            self.life.to(EngineState.RUNNING)
            # What exists now (modules, classes, clients, config) lives as long as the process:
            # out of the cyclic collector's reach, a full collection scans only what came after
            # (bench/latency.py saw full collections of 34-112 ms stall the loop). Only once,
            # before any task exists: a frozen object caught in a cycle is never collected, and
            # tasks come and go with rebalances (and the collect first, so no garbage already
            # waiting in a cycle is frozen with the rest). Undone when the run ends, so a
            # process that runs apps one after another (tests, embedding) reclaims them.
            gc.collect()
            gc.freeze()
            while not self._stop:
                try:
                    self.run_once()
                except (ProducerFencedError, *Recoverable) as exc:
                    self._recover_until_done(exc)
            clean = True
        except StopRequested as exc:
            log.warning("event=stop_during_outage detail=%s", exc)  # a stop, not a crash
        except BaseException:
            self.life.to(EngineState.FAILED)
            raise
        finally:
            try:
                self.shutdown(commit=clean)
            finally:
                self.watchdog.close()
                gc.unfreeze()

    def start(self) -> None:
        cfg = self.config
        self.identity = InstanceIdentity(cfg.state_dir, cfg.application_id)
        topics.wait_for_cluster(cfg, self.outage)
        self.queries.partition_counts = self.outage.run(
            lambda: topics.ensure_topics(self.topology, cfg), "create topics",
            retry_on=(AbortableError,))
        if self.topology.global_stores:
            self._bootstrap_globals(self.queries.partition_counts)
        self.producer = self.clients.producer(self._producer_config())
        self.collector = KafkaRecordCollector(self.producer, self.stats, self._partition_count,
                                              transactional=cfg.exactly_once)
        self.consumer = self.clients.consumer(self._consumer_config())
        self.committer = make_committer(cfg.processing_guarantee, self.consumer, self.producer,
                                        self.collector, self.stats,
                                        cfg.transaction_timeout_ms / 1000 * 3)
        self._start_producer()
        if cfg.num_standby_replicas > 0:
            self.standbys = StandbyReplicas(
                cfg.application_id, self.topology, self.subtopologies, self.identity.directory,
                cfg.bootstrap_servers, self._restore_client_config(), cfg.num_standby_replicas,
                self.clients, lambda: self.queries.partition_counts)
        if cfg.exactly_once and self._static_id is not None:
            self.handover = HandOver(
                cfg.application_id, self._static_id, cfg.bootstrap_servers,
                self._restore_client_config(), cfg.transaction_timeout_ms, self.clients,
                deadline_s=min(HANDOVER_DEADLINE_S, cfg.transaction_timeout_ms / 1000))
        self.consumer.subscribe(self.topology.source_topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._next_commit = time.monotonic() + cfg.effective_commit_interval_ms / 1000
        log.info("event=start application_id=%s guarantee=%s transactional_id=%s topics=%s",
                 cfg.application_id, cfg.processing_guarantee,
                 self.identity.transactional_id(cfg.application_id)
                 if cfg.exactly_once else "-", self.topology.source_topics)

    def _bootstrap_globals(self, partitions: dict[str, int]) -> None:
        """Global stores to the end of their topics before the group is joined, so no
        record is processed against a global table still catching up (global_state)."""
        assert self.identity is not None
        cfg = self.config
        self.globals = GlobalStateMaintainer(self.topology, self.identity.directory)
        client = self._restore_client_config()
        def progress(reports: list[Any]) -> None:
            self.watchdog.beat("global bootstrap")  # a long bootstrap is no stall
            self.meters.restore_progress(reports)

        progress([])
        try:
            report = self.globals.bootstrap(cfg.bootstrap_servers, partitions,
                                            cfg.restore_timeout_ms / 1000, client,
                                            should_stop=lambda: self._stop,
                                            on_progress=progress)
        except RestoreInterrupted as exc:  # a stop, not a failure: progress is kept
            raise StopRequested(str(exc)) from exc
        self.meters.restore_finished()
        self.stats.restored += report.records
        self.stats.global_restored += report.records
        self.globals.start(self.clients.consumer(global_consumer_config(
            cfg.bootstrap_servers, cfg.application_id, client)), partitions)

    def _restore_client_config(self) -> dict[str, Any]:
        return {k: v for k, v in self.config.consumer_config.items()
                if k.startswith(("security.", "sasl.", "ssl.", "client."))}

    def shutdown(self, commit: bool = True) -> None:
        """Leave the group. Commit only on a clean stop: after an error, uncommitted work is
        aborted (exactly-once) or redone by the next owner (at-least-once). A stop while
        Kafka is unreachable is still a clean stop: nothing is committed, nothing is lost."""
        if self.life.state not in (EngineState.FAILED, EngineState.STOPPED):
            self.life.to(EngineState.STOPPING)
        try:
            if self.consumer is not None and self.committer is not None:
                try:
                    if commit and self.committer.dirty and self.life.may_commit:
                        try:
                            self._commit()
                        except (KStreamError, KafkaException) as exc:
                            log.warning("event=final_commit_failed error=%s action=abort", exc)
                            commit = False
                    if not commit or self.committer.dirty:
                        self._abort_quietly()
                finally:
                    member_id = self._member_id()
                    self._close_consumer(self.consumer)
                    if self._leave_group and self._static_id is not None and member_id:
                        self._leave_static_group(member_id)
            if self.committer is not None:
                try:
                    self.committer.close()
                except (KStreamError, KafkaException) as exc:
                    log.warning("event=close_failed error=%s", exc)  # the first error matters
        finally:
            for task in self.tasks.values():
                self._retire(task)
            self.tasks.clear()
            self._close_suspended()
            if self.globals is not None:
                self.globals.close()
            self.queries.stopped()
            if self.standbys is not None:
                self.standbys.close()
            if self.identity is not None:
                self.identity.release()
            if self.life.state is not EngineState.STOPPED:
                self.life.to(EngineState.STOPPED)
            log.info("event=stop stats=%s", self.stats.snapshot())

    # -- the loop ------------------------------------------------------------------------------
    def run_once(self) -> None:
        assert self.consumer is not None and self.committer is not None
        cfg = self.config
        self.watchdog.beat("consume")
        if self.globals is not None:
            self.stats.global_updates += self.globals.poll()
        if self._held and self.handover is not None and self.handover.done():
            self._release_held()
        msgs = self._consume()
        self._raise_deferred()
        if self._orderer.active:
            msgs = self._orderer.order(msgs) if msgs else self._orderer.release_due()
        if self._producer_saw_outage and not self.committer.in_transaction:
            self._renew_producer_after_outage()
        if msgs:
            self.watchdog.beat("process")
            self.committer.before_batch(
                self._positions() if cfg.processing_guarantee == AT_MOST_ONCE else [])
            self.stats.records_in += len(msgs)
            self.meters.batch_started(self.stats.records_out)
            start = 0
            try:
                while start < len(msgs):
                    start = self._process_run(msgs, start)
            except _RestartBatch:
                pass  # rewound to the committed offsets: the rest of this batch comes again
            self.meters.batch_done(len(msgs), self.stats.records_out,
                                   self.collector.last_timestamp if self.collector else None)
        producer = self.producer
        assert producer is not None
        try:
            producer.poll(0)
        except KafkaException as exc:
            raise kafka_failure(exc, "poll") from exc
        if self.standbys is not None:
            self._keep_standbys(self.standbys)
        due = [task for task in self.tasks.values() if task.wall_clock_due()]
        if due:
            self.committer.before_batch([])  # punctuators may write: inside the transaction
            for task in due:
                task.punctuate_wall_clock()
        if self.life.replay_overdue():
            assert self.life.failure is not None
            raise self.life.failure
        if time.monotonic() >= self._next_commit:
            if self.committer.dirty:
                self.watchdog.beat("commit")
                self._commit()
            self._next_commit = time.monotonic() + cfg.effective_commit_interval_ms / 1000

    def _consume(self) -> list[TaskMessage]:
        """What has arrived, up to batch_size: adaptive batching.

        librdkafka's consume(n, timeout) returns only when n records are there or the timeout
        passed, so at moderate load a fetched record waited up to poll_timeout_ms for company.
        Take what is queued instead; block only when nothing is, for the first record (the
        rest of its fetch comes with it), and never past a due commit. Under load the queue
        holds a full batch anyway, so batches stay large when throughput needs them.
        """
        assert self.consumer is not None and self.committer is not None
        consumer, size = self.consumer, self.config.batch_size
        # confluent-kafka's stubs type headers as dict | list of str | bytes | None; a consumer
        # only ever delivers a list of (str, bytes) or None, as TaskMessage says.
        msgs: list[TaskMessage] = consumer.consume(size, 0)  # type: ignore[assignment]
        if msgs:
            return msgs
        wait = self.config.poll_timeout_ms / 1000
        if self.committer.dirty:
            wait = max(0.0, min(wait, self._next_commit - time.monotonic()))
        msgs = consumer.consume(1, wait)  # type: ignore[assignment]
        if msgs and size > 1:
            msgs.extend(consumer.consume(size - 1, 0))  # type: ignore[arg-type]
        return msgs

    def _process_run(self, msgs: list[TaskMessage], start: int) -> int:
        """Process msgs[start:]; return where to continue after a handled bad record."""
        if self.life.replaying:
            return self._process_until_failure(msgs, start)
        handlers, meters, stats = self._handlers, self.meters, self.stats
        i, end = start, len(msgs)
        try:
            while i < end:
                msg = msgs[i]
                if msg.error() is not None:
                    self._consumer_error(msg)
                    i += 1
                    continue
                # Batches come in runs of one partition: the task's handler takes the whole
                # run (kstream.runtime.fusion.RunHandler) and says where it stopped.
                topic, partition = msg.topic(), msg.partition()
                meters.run_boundary(topic, partition, i, stats.records_out)
                handler = handlers.get(topic, {}).get(partition)
                if handler is None:
                    i += 1  # fetched before a revoke: the partition's new owner processes it
                    continue
                taken = handler(msgs, i)
                if taken <= i:  # a handler takes at least the record it was handed
                    raise InternalError(f"the handler of {topic}[{partition}] took no record")
                i = taken
        except RecordError as err:
            self.meters.bad_record(err.stage)
            index = err.batch_index if err.batch_index >= 0 else i
            self._on_record_error(err, msgs, index)
            return index + 1
        return end

    def _process_until_failure(self, msgs: list[TaskMessage], start: int) -> int:
        """Replay after an abort, stopping exactly at the record that failed before."""
        for i in range(start, len(msgs)):
            msg = msgs[i]
            if msg.error() is not None:
                self._consumer_error(msg)
                continue
            topic, partition = msg.topic() or "", msg.partition() or 0
            stop_at = self.life.stop_offset(topic, partition)
            if stop_at is not None and (msg.offset() or 0) >= stop_at:
                self._commit(overrides=_first_offsets(msgs[i:]))
                raise self.life.failure_at(topic, partition)
            handler = self._handlers.get(topic, {}).get(partition)
            if handler is None:
                continue
            try:
                handler(msgs[i:i + 1], 0)
            except RecordError as err:
                self._on_record_error(err, msgs, i)
                return i + 1
        return len(msgs)

    # -- bad records ---------------------------------------------------------------------------
    def _on_record_error(self, err: RecordError, msgs: list[TaskMessage], index: int) -> None:
        # The policy (dead-letter, or which way to stop) is shared with the TopologyTestDriver.
        assert self.collector is not None
        action = bad_records.handle_bad_record(
            err, msgs[index], error_policy=self.config.error_policy,
            guarantee=self.config.processing_guarantee, dlq_topic=self.config.dlq_topic,
            collector=self.collector, stats=self.stats, log=log)
        if action is bad_records.BadRecordAction.DEAD_LETTERED:
            return
        if action is bad_records.BadRecordAction.REPLAY_THEN_STOP:
            # Effects of earlier records share the uncommitted state (and, under exactly-once,
            # the open transaction) with whatever the failed record did before it raised:
            # abort, replay up to the failed record, commit, then stop.
            self.life.record_failed(err)
            assert self.committer is not None
            self.committer.abort(list(self.tasks.values()))
            self._rewind()
            raise _RestartBatch()
        self._commit(overrides=_first_offsets(msgs[index:]))
        raise err

    def _consumer_error(self, msg: TaskMessage) -> None:
        err: KafkaError = msg.error()
        if err.code() == KafkaError._PARTITION_EOF:
            return  # asked for by the orderer; informative only
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self._check_topic_gone(msg.topic() or "", err)
            return
        if err.code() in (KafkaError._FATAL, KafkaError.FENCED_INSTANCE_ID):
            # librdkafka's only fatal consumer error: a member with our group.instance.id
            # fenced this consumer, which is dead now. Usually our own rejoin after a broker
            # restart (a new member id for the same instance id, seen in
            # tests/engine/test_engine_broker_restart.py), so: new clients, rejoin. A second
            # process with a copied identity fences us back and forth; the fencing budget
            # (FENCINGS_PER_MINUTE) turns that into a FatalError naming the identity file.
            raise ProducerFencedError(f"consumer fenced as static member {self._static_id}: "
                                      f"{err.str()}")
        kind = classify(err)
        if kind is ErrorClass.FATAL:
            raise FatalError(f"consumer: {err}")
        if kind is ErrorClass.FENCED:
            raise TaskMigratedError(f"consumer: {err}")
        self._on_client_error(err)

    def _check_topic_gone(self, topic: str, err: KafkaError) -> None:
        """A broker that just restarted may call a topic unknown for a moment: only a topic
        that metadata still lacks after a grace period stops the app."""
        assert self.consumer is not None
        try:
            md = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            exists = md is not None and md.error is None and bool(md.partitions)
        except KafkaException:
            exists = False  # cannot tell while Kafka is away; the grace period decides
        if exists:
            self._missing_since.pop(topic, None)
            return
        since = self._missing_since.setdefault(topic, time.monotonic())
        if time.monotonic() - since > MISSING_TOPIC_GRACE_S:
            raise FatalError(f"consumer: topic {topic} no longer exists ({err})")
        self._on_client_error(err)

    def _on_client_error(self, err: KafkaError) -> None:
        """librdkafka's own view of trouble (error_cb and consumer error events): informative
        only, every call still fails or succeeds on its own. Rate-limited."""
        if err.code() in _OUTAGE_CODES:
            self.stats.ready = 0
        now = time.monotonic()
        if now - self._last_client_log >= CLIENT_LOG_INTERVAL_S:
            self._last_client_log = now
            log.warning("event=client_error error=%s", err)

    # -- commit --------------------------------------------------------------------------------
    def _positions(self) -> list[TopicPartition]:
        if not self._assignment:
            return []
        assert self.consumer is not None
        return self.consumer.position(self._assignment)

    def _commit(self, overrides: dict[tuple[str, int], int] | None = None) -> None:
        assert self.committer is not None
        offsets = []
        held = self._orderer.held_offsets()  # fetched, not processed: not consumed either
        for tp in self._positions():
            offset = tp.offset
            key = (tp.topic, tp.partition)
            if overrides and key in overrides:
                offset = overrides[key]
            if key in held:
                offset = min(offset, held[key]) if offset >= 0 else held[key]
            if offset < 0:
                continue
            task = self.tasks.get((self._sub_of_topic[tp.topic].index, tp.partition))
            stream_time = task.stream_time if task is not None else -1
            offsets.append(TopicPartition(tp.topic, tp.partition, offset,
                                          metadata=orjson.dumps({"st": stream_time}).decode()))
        began = time.perf_counter()
        self.committer.commit(list(self.tasks.values()), offsets)
        self.meters.commit_seconds.observe(time.perf_counter() - began)
        self._recoveries_since_commit = 0
        self.stats.ready = 1

    # -- recovery ------------------------------------------------------------------------------
    def _recover_until_done(self, first: KStreamError) -> None:
        """Recover from `first`, and from whatever recovery itself runs into."""
        exc: KStreamError | None = first
        while exc is not None:
            self._recoveries_since_commit += 1
            if self._recoveries_since_commit > RECOVERIES_WITHOUT_COMMIT:
                raise FatalError(f"{RECOVERIES_WITHOUT_COMMIT} recoveries without a successful "
                                 f"commit in between; last error: {exc}") from exc
            try:
                if isinstance(exc, ProducerFencedError):
                    self._recover_from_fencing(exc)
                else:
                    self._recover(exc)
                exc = None
            except (ProducerFencedError, *Recoverable) as again:
                exc = again

    def _recover(self, exc: KStreamError) -> None:
        """Abort (or replace a producer that cannot), then rewind every task to its committed
        offsets and state. Waits out a broker outage of any length; stops on request."""
        self.life.to(EngineState.RECOVERING)
        self.stats.recoveries += 1
        began = time.monotonic()
        log.warning("event=recover error=%s", exc)
        committer = self.committer
        assert committer is not None
        replace = isinstance(exc, AbortableError) and exc.producer_unusable

        def abort() -> None:
            nonlocal replace
            if replace:
                self._replace_producer()
                replace = False
                return
            try:
                committer.abort(list(self.tasks.values()), after_error=True)
            except AbortableError as failed:
                replace = replace or failed.producer_unusable
                raise

        self.outage.run(abort, "abort the open transaction")
        self.outage.run(self._rewind, "rewind to committed offsets")
        self.life.after_recovery()
        self.stats.ready = 1
        log.warning("event=recovered seconds=%.1f", time.monotonic() - began)

    def _recover_from_fencing(self, exc: ProducerFencedError | TaskMigratedError) -> None:
        """Drop every task without committing, replace the clients and rejoin the group.

        The fenced transaction is void on the broker, so its outputs and offsets never count;
        the group hands partitions out again and processing resumes from committed offsets.
        """
        now = time.monotonic()
        self._fencings = [t for t in self._fencings if now - t < 60] + [now]
        if len(self._fencings) > FENCINGS_PER_MINUTE:
            assert self.identity is not None
            raise FatalError(
                f"fenced {len(self._fencings)} times in a minute: another instance keeps using "
                "this instance's transactional.id / group.instance.id, from "
                f"{self.identity.directory / 'kstream.id'}: two instances share one state "
                "directory's identity (a copied state dir?). Give each its own state_dir; "
                f"last: {exc}") from exc
        self.life.to(EngineState.RECOVERING)
        log.warning("event=fenced error=%s action=rejoin", exc)
        assert self.consumer is not None and self.committer is not None
        for task in self.tasks.values():
            task.discard_uncommitted()
        self._close_tasks()
        self._held = []  # paused on the consumer closed below
        self.committer.dirty = False
        # Fresh clients, as after a restart: closing the consumer leaves the group (its
        # revocation commits nothing: nothing is dirty), the new one joins again.
        self._close_consumer(self.consumer)
        self._discard_producer()
        self.consumer = self.clients.consumer(self._consumer_config())
        self._new_producer()
        self._start_producer()
        self.consumer.subscribe(self.topology.source_topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.life.after_recovery()

    def _replace_producer(self) -> None:
        """The producer cannot go on: a new one (same transactional.id) takes over. Its
        init_transactions bumps the epoch, so the old one's open transaction is aborted."""
        log.warning("event=replace_producer")
        self._discard_producer()
        self._new_producer()
        self._start_producer()

    def _new_producer(self) -> None:
        assert self.collector is not None and self.committer is not None
        assert self.consumer is not None
        self.producer = self.clients.producer(self._producer_config())
        self.collector.rebind(self.producer)
        self.committer.replace_clients(self.consumer, self.producer)

    def _start_producer(self) -> None:
        """init_transactions (exactly-once) on the current producer, however long Kafka is
        away; a producer that breaks meanwhile is replaced."""
        committer = self.committer
        assert committer is not None

        def start() -> None:
            try:
                committer.start()
            except AbortableError as exc:
                if exc.producer_unusable:
                    self._discard_producer()
                    self._new_producer()
                raise

        self.outage.run(start, "init_transactions")
        self._producer_saw_outage = False  # this producer met Kafka after any outage

    def _renew_producer_after_outage(self) -> None:
        """A transactional producer that lived through "all brokers down" can keep its
        transaction-coordinator request queued on a dead connection after the broker is back
        (seen: send_offsets_to_transaction timing out again and again for 30 s and more).
        Between transactions a new producer costs one init_transactions, so take one."""
        self._producer_saw_outage = False
        if not self.config.exactly_once:
            return
        log.info("event=renew_producer reason=all_brokers_down")
        self._replace_producer()

    def _discard_producer(self) -> None:
        old = self.producer
        if old is not None:
            with contextlib.suppress(KafkaException, RuntimeError):  # void anyway
                old.purge()

    def _abort_quietly(self) -> None:
        """Best effort on the way out: a transaction left open is aborted by the broker after
        transaction.timeout.ms, or at once by this instance's next incarnation."""
        assert self.committer is not None
        try:
            self.committer.abort(list(self.tasks.values()), after_error=True)
        except (KStreamError, KafkaException) as exc:
            log.warning("event=abort_failed error=%s", exc)

    def _rewind(self) -> None:
        """Back to the committed offsets with fresh tasks (processor state is not durable)."""
        self._recreate_tasks()
        if not self._assignment:
            return
        assert self.consumer is not None
        try:
            committed = self.consumer.committed(self._assignment, timeout=10)
            reset = OFFSET_BEGINNING if self.config.auto_offset_reset == "earliest" else OFFSET_END
            for tp in committed:
                target = tp.offset if tp.offset >= 0 else reset
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, target))
        except KafkaException as exc:
            raise kafka_failure(exc, "rewind to committed offsets") from exc
        self._restore_stream_times(committed)
        log.info("event=rewind partitions=%d", len(committed))

    def _raise_deferred(self) -> None:
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            raise exc

    def _defer(self, exc: KStreamError) -> None:
        """Keep an error from a rebalance callback for after consume() returns: raising inside
        librdkafka's callback would leave the assignment half done. The worst one wins."""
        rank = {FatalError: 3, ProducerFencedError: 2}
        current = self._deferred
        if current is None or rank.get(type(exc), 1) > rank.get(type(current), 1):
            self._deferred = exc

    def _set_waiting(self, waiting: bool) -> None:
        self.stats.ready = 0 if waiting else 1

    # -- rebalance -----------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self._assignment = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        if self.handover is not None:
            # Before any processing (alongside the restore): a departed owner's open transaction
            # would hide everything after it from our read_committed reads
            # (kstream.runtime.handover).
            self.handover.start((tp.topic, tp.partition) for tp in partitions)
        resumed: set[tuple[int, int]] = set()
        try:
            resumed = self._create_tasks()
            if partitions:
                self._restore_stream_times(self._committed_for_stream_time(consumer))
        except KStreamError as exc:
            if not self._stop:  # stopping anyway: an interrupted restore is no failure
                self._defer(exc)
        finally:
            if self.handover is not None and not self.handover.done():
                self._hold_moved_in(consumer, partitions, resumed)
        log.info("event=assign partitions=%s resumed_tasks=%d", _describe(partitions),
                 len(resumed))

    def _hold_moved_in(self, consumer: Consumer, partitions: list[TopicPartition],
                       resumed: set[tuple[int, int]]) -> None:
        """Assign now, but pause the partitions that moved in until the hand-over is done;
        run_once releases them. Only visibility waits on it, not correctness (KIP-447 already
        refuses a departed member's offsets), so the deadline lets them go regardless."""
        consumer.assign(partitions)  # in the callback: librdkafka then skips its own assign
        self._held = [TopicPartition(tp.topic, tp.partition) for tp in partitions
                      if (self._sub_of_topic[tp.topic].index, tp.partition) not in resumed]
        if self._held:
            self._consumer_call("pause", self._held)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        self._consumer_call("resume", held)

    def _committed_for_stream_time(self, consumer: Consumer) -> list[TopicPartition]:
        try:
            return self.outage.run(lambda: consumer.committed(self._assignment, timeout=10),
                                   "read committed offsets", deadline_s=30)
        except (AbortableError, StopRequested) as exc:
            log.warning("event=stream_time_unknown error=%s", exc)
            return []

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._held:
            self._release_held()  # a paused partition would stay paused when it comes back
        clean = False
        try:
            if self.committer is not None and self.committer.dirty and self.life.may_commit:
                self._commit()
                clean = True
            elif self.committer is not None and self.committer.dirty:
                self.committer.abort(list(self.tasks.values()), after_error=True)
            else:
                clean = True
        except (KStreamError, KafkaException) as exc:
            # Nothing of ours may be committed any more; the next owner redoes it. The open
            # transaction (if any) is aborted by the recovery this deferred error starts.
            log.warning("event=revoke_commit_failed error=%s", exc)
            for task in self.tasks.values():
                task.discard_uncommitted()
            self._defer(exc if isinstance(exc, KStreamError) else kafka_failure(exc, "revoke"))
        finally:
            if clean and not self._stop and self.life.state is EngineState.RUNNING:
                self._suspend_tasks()
            else:
                self._close_tasks()
        log.info("event=revoke partitions=%s", _describe(partitions))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Someone else owns these now: never commit work done for them.
        if self._held:
            self._release_held()
        if self.committer is not None:
            try:
                self.committer.abort(list(self.tasks.values()), after_error=True)
            except (KStreamError, KafkaException) as exc:
                self._defer(exc if isinstance(exc, KStreamError) else kafka_failure(exc, "lost"))
        self._close_tasks()
        self._close_suspended()
        log.warning("event=lost partitions=%s", _describe(partitions))

    def _create_tasks(self) -> set[tuple[int, int]]:
        """Tasks for the assignment (resumed where _suspend_tasks allows); the resumed ones."""
        assert self.collector is not None
        numbers: dict[int, set[int]] = defaultdict(set)
        for tp in self._assignment:
            numbers[self._sub_of_topic[tp.topic].index].add(tp.partition)
        resumed = self._resume_suspended({(sub, p) for sub, parts in numbers.items()
                                          for p in parts})
        if self.standbys is not None:
            # A store directory is open as a standby or as a task, never both: the task's
            # restore then continues from the standby's checkpoint (only the lag).
            self.standbys.release((sub, p) for sub, parts in numbers.items() for p in parts)
            self.standbys.refresh_soon()
        for sub in self.subtopologies:
            for partition in sorted(numbers.get(sub.index, ())):
                task_id = (sub.index, partition)
                self.tasks[task_id] = (resumed[task_id] if task_id in resumed
                                       else self.new_task(sub.index, partition))
        self.queries.assigned(self.tasks)
        self._restore([t for tid, t in self.tasks.items() if t.stores and tid not in resumed])
        self._handlers = {}
        for tp in self._assignment:
            task = self.tasks[(self._sub_of_topic[tp.topic].index, tp.partition)]
            self._handlers.setdefault(tp.topic, {})[tp.partition] = task.run_handler(tp.topic)
        by_task: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
        for tp in self._assignment:
            by_task[(self._sub_of_topic[tp.topic].index, tp.partition)].append(
                (tp.topic, tp.partition))
        self._orderer.assign(by_task.values() if self._ordered else [])
        self.queries.publish(self.tasks)
        return set(resumed)

    def _keep_standbys(self, standbys: StandbyReplicas) -> None:
        """Between batches: a bounded slice of standby work, and the placement check."""
        self.watchdog.beat("standbys")
        standbys.poll()
        # Suspended tasks still hold their stores open: never a standby of those either.
        standbys.maybe_refresh(self._static_id or self._member_id(),
                               set(self.tasks) | set(self._suspended[1]))
        now = time.monotonic()
        if now >= self._next_standby_lag:
            self._next_standby_lag = now + 1.0
            self.meters.standby_lag = standbys.lag()

    def _restore(self, tasks: list[Task]) -> None:
        """Bring the tasks' stores to the end of their changelogs before any processing."""
        stores = [store for task in tasks for store in task.stores.values()]
        if not stores:
            return
        client = self._restore_client_config()
        self.watchdog.beat("restore")
        # A store with no checkpoint replays its whole changelog: what standbys and static
        # membership exist to avoid, so it is counted (the rolling-restart test reads it);
        # one whose changelog is still empty has nothing to replay and does not count.
        fresh = {(s.name, s.partition) for s in stores
                 if s.logging and s.backend.committed_offset is None}
        report = restore_stores(self.config.bootstrap_servers, stores,
                                self.config.restore_timeout_ms / 1000, client,
                                should_stop=lambda: self._stop,
                                on_progress=self.meters.restore_progress)
        self.meters.restore_finished()
        self.stats.restored += report.records
        from_scratch = sum(1 for r in report.stores
                           if (r.store, r.partition) in fresh and r.end_offset > r.start_offset)
        log.info("event=restored stores=%d from_scratch=%d records=%d seconds=%.2f",
                 len(report.stores), from_scratch, report.records, report.seconds)

    def new_task(self, sub_index: int, partition: int) -> Task:
        assert self.collector is not None and self.identity is not None
        return build_task(self.config.application_id, self.topology,
                          self.subtopologies[sub_index], partition, self.collector,
                          self.identity.directory, fusion=self.config.fusion,
                          global_stores=None if self.globals is None else self.globals.stores,
                          sole_topic=self._sole_topic)

    def _retire(self, task: Task) -> None:
        self.queries.withdraw()  # no query reads a store from here on
        self.stats.late_records += task.dropped_late  # keep counts across task lifetimes
        for reason, count in task.skipped.items():
            setattr(self.stats, f"skipped_{reason}",
                    getattr(self.stats, f"skipped_{reason}") + count)
        task.close()

    def _suspend_tasks(self) -> None:
        """After a clean revoke: keep the tasks, stores open, for the next assignment.

        Invariant (why a resumed task needs no restore): its last transaction committed in
        the revoke, and an eager rebalance hands a partition to nobody until every member has
        revoked and rejoined; so if the next assignment gives it back to the same member id
        (no session lost in between), nobody wrote its changelog meanwhile and its stores,
        stream time and processors are exactly its committed state. Otherwise it is closed."""
        self.queries.withdraw()  # no query reads a store we do not own
        self._close_suspended()
        self._suspended = (self._member_id(), dict(self.tasks))
        self.tasks.clear()
        self._handlers = {}
        self._assignment = []
        self._orderer.assign([])

    def _resume_suspended(self, assigned: set[tuple[int, int]]) -> dict[tuple[int, int], Task]:
        """The suspended tasks assigned again to the same member id; the others closed."""
        member_id, suspended = self._suspended
        self._suspended = (None, {})
        same_member = member_id is not None and member_id == self._member_id()
        resumed = {tid: t for tid, t in suspended.items() if same_member and tid in assigned}
        for tid, task in suspended.items():
            if tid not in resumed:
                self._retire(task)
        return resumed

    def _close_suspended(self) -> None:
        self._resume_suspended(set())

    def _close_tasks(self) -> None:
        for task in self.tasks.values():
            self._retire(task)
        self.tasks.clear()
        self._handlers = {}
        self._assignment = []
        self._orderer.assign([])

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
    @property
    def _static_id(self) -> str | None:
        """This instance's group.instance.id, None without static membership."""
        if not self.config.static_membership or self.identity is None:
            return None
        return self.identity.group_instance_id(self.config.application_id)

    def _member_id(self) -> str | None:
        try:
            return self.consumer.memberid() if self.consumer is not None else None
        except (KafkaException, RuntimeError):
            return None

    def _leave_static_group(self, member_id: str) -> None:
        """Scale-in: remove this static member now instead of after session_timeout_ms."""
        cfg = self.config
        assert self._static_id is not None
        protocol = str(cfg.consumer_config.get("security.protocol", "plaintext")).lower()
        if protocol != "plaintext":
            log.warning("event=leave_group_skipped reason=security.protocol=%s detail=the "
                        "group keeps this member until session_timeout_ms", protocol)
            return
        self.watchdog.beat("leave group")
        try:
            result = leave_group(cfg.bootstrap_servers, cfg.application_id, member_id,
                                 self._static_id, timeout_s=min(10.0, cfg.session_timeout_ms
                                                                / 1000))
            log.info("event=left_group instance=%s removed=%s", self._static_id,
                     result.removed)
        except LeaveGroupError as exc:
            log.warning("event=leave_group_failed error=%s", exc)

    def _close_consumer(self, consumer: Consumer) -> None:
        self.watchdog.beat("close consumer")
        try:
            consumer.close()  # revokes (commits nothing new) and leaves the group
        except (KafkaException, RuntimeError) as exc:
            log.warning("event=consumer_close_failed error=%s", exc)

    def _partition_count(self, topic: str) -> int:
        assert self.producer is not None
        try:
            md = self.producer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            raise kafka_failure(exc, f"metadata of {topic}") from exc
        if md is None or (md.error is not None
                          and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            raise FatalError(f"topic {topic} does not exist (or has no metadata)")
        if md.error is not None or not md.partitions:
            raise AbortableError(f"metadata of {topic} unavailable: {md.error}")
        return len(md.partitions)

    def _producer_config(self) -> dict[str, Any]:
        cfg = self.config
        tid = None
        if cfg.exactly_once:
            assert self.identity is not None
            tid = self.identity.transactional_id(cfg.application_id)
        logs = any(builder.logging for builder in self.topology.stores.values())
        return producer_config(cfg, tid, logs, self._on_delivery, self._on_producer_error)

    def _on_producer_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._producer_saw_outage = True
        self._on_client_error(err)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if self.collector is not None:
            self.collector.on_delivery(err, msg)

    def _consumer_config(self) -> dict[str, Any]:
        return consumer_config(self.config, self._on_consumer_stats, self._on_client_error,
                               partition_eof=self._ordered, group_instance_id=self._static_id)

    def _consumer_call(self, name: str, partitions: list[TopicPartition]) -> None:
        """pause/resume for the orderer's back-pressure; a failure only costs memory or a
        refetch, never a record, so it is logged, not raised."""
        if self.consumer is None:
            return
        try:
            getattr(self.consumer, name)(partitions)
        except KafkaException as exc:
            log.warning("event=%s_failed partitions=%s error=%s", name, _describe(partitions),
                        exc)

    def _on_consumer_stats(self, payload: str) -> None:
        try:
            stats = orjson.loads(payload)
            # Per partition and in total; librdkafka's consumer_lag is -1 under exactly-once.
            self.stats.lag = self.meters.lag_from_statistics(stats, self.config.exactly_once)
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            log.debug("unreadable consumer statistics")


class _RestartBatch(Exception):
    """Internal: the batch's remaining records were discarded by a rewind."""


def _first_offsets(msgs: list[TaskMessage]) -> dict[tuple[str, int], int]:
    """Per partition, the offset of the first record not processed (the commit position)."""
    first: dict[tuple[str, int], int] = {}
    for msg in msgs:
        if msg.error() is None:
            first.setdefault((msg.topic(), msg.partition()), msg.offset())
    return first


def _describe(partitions: list[TopicPartition]) -> str:
    return ",".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
