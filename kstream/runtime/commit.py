"""The commit protocol, one class per processing guarantee, each step numbered in order.

Exactly-once (KIP-447, one transactional producer per process):
  1. begin_transaction (lazily, before the first record of a commit interval is processed)
  2. process records; outputs and DLQ records are produced inside the transaction
  3. tasks produce their stores' changelog records (prepare_commit)
  4. send_offsets_to_transaction(consumed positions, consumer group metadata)
  5. commit_transaction (repeated while Kafka calls the error retriable, as librdkafka allows)
  6. only now tasks apply buffered store writes locally (after_commit)

At-least-once: 2 process, 3a outputs acknowledged, 3b changelog acknowledged, 4 commit offsets,
  6 apply stores. At-most-once: offsets of a batch are committed before it is processed;
  outputs are flushed at the commit tick.

Failures: `commit` never half-recovers on its own. It raises AbortableError (the engine calls
`abort`, then rewinds every task to its committed offsets and state), ProducerFencedError or
TaskMigratedError (the engine rejoins), or FatalError (the app stops). `abort` raises
AbortableError(producer_unusable=True) when the producer cannot abort any more; the engine then
hands in a new producer with `replace_clients`, whose `start` (init_transactions) aborts the
open transaction on the broker. Every call here has a deadline.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from kstream.errors import (
    AbortableError,
    FatalError,
    TaskMigratedError,
    kafka_failure,
)
from kstream.runtime import faults
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.kafka_errors import GROUP_CODES, ErrorClass, classify, kafka_error_of
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import Task

log = logging.getLogger("kstream.commit")

RETRY_BACKOFF_S = 0.1


class Committer(abc.ABC):
    """What the engine calls around batches; one subclass per guarantee, same interface."""

    transactional = False

    def __init__(self, consumer: Consumer, producer: Producer, collector: KafkaRecordCollector,
                 stats: EngineStats, timeout_s: float) -> None:
        self.consumer = consumer
        self.producer = producer
        self.collector = collector
        self.stats = stats
        self.timeout_s = timeout_s
        self.dirty = False  # records processed since the last commit

    @property
    def in_transaction(self) -> bool:
        return False

    def start(self) -> None:  # noqa: B027 - optional hook
        """Once per producer, before its first batch. Raises like `commit`."""

    def before_batch(self, positions: list[TopicPartition]) -> None:
        """Called after a batch was consumed, before it is processed."""
        self.dirty = True

    @abc.abstractmethod
    def commit(self, tasks: Iterable[Task], offsets: list[TopicPartition]) -> None:
        """Make the processed records' effects and offsets durable together."""

    def abort(self, tasks: Iterable[Task], after_error: bool = False) -> None:
        """Drop what is not committed (only exactly-once can take outputs back)."""
        for task in tasks:
            task.discard_uncommitted()
        self.collector.delivery_errors.clear()
        self.dirty = False

    def replace_clients(self, consumer: Consumer, producer: Producer) -> None:
        """Work through new clients from now on (after fencing or a producer that broke).
        Whatever the old producer had open is void; call `start` next."""
        self.consumer = consumer
        self.producer = producer
        self.dirty = False

    def close(self) -> None:
        """Deliver what is queued, within the deadline (a clean stop)."""
        _flush(self.producer, self.timeout_s, "flush on close")


class AtMostOnce(Committer):
    def before_batch(self, positions: list[TopicPartition]) -> None:
        # Step 0: offsets first, so a crash during processing skips the batch, never repeats it.
        valid = [tp for tp in positions if tp.offset >= 0]
        if valid:
            _commit_offsets(self.consumer, valid)
            self.stats.commits += 1
        self.dirty = True

    def commit(self, tasks: Iterable[Task], offsets: list[TopicPartition]) -> None:
        tasks = list(tasks)
        for task in tasks:
            task.prepare_commit()
        _flush(self.producer, self.timeout_s, "flush")
        valid = [tp for tp in offsets if tp.offset >= 0]
        if valid:  # normally what before_batch committed; lower when stopping at a bad record
            _commit_offsets(self.consumer, valid)
        for task in tasks:
            task.after_commit()
        self.collector.delivery_errors.clear()  # at most once: failed outputs are loss
        self.dirty = False


class AtLeastOnce(Committer):
    def commit(self, tasks: Iterable[Task], offsets: list[TopicPartition]) -> None:
        tasks = list(tasks)
        for task in tasks:                                   # 2. cached updates out
            task.flush_caches()
        # Outputs are acknowledged before the changelog is written: a restored store then
        # never holds an update whose output record was lost, so no update goes missing.
        self._flush_acknowledged("output records")         # 3a.
        for task in tasks:                                   # 3b. changelog records
            task.send_changelogs()
        self._flush_acknowledged("changelog records")
        valid = [tp for tp in offsets if tp.offset >= 0]
        if valid:                                            # 4. offsets
            _commit_offsets(self.consumer, valid)
        faults.maybe_crash("after_commit_before_flush")
        for task in tasks:                                   # 6. local stores
            task.after_commit()
        self.stats.commits += 1
        self.dirty = False

    def _flush_acknowledged(self, what: str) -> None:
        remaining = _flush(self.producer, self.timeout_s, what)
        errors = self.collector.delivery_errors
        for err in errors:
            if classify(err) is ErrorClass.FATAL:
                raise FatalError(f"{what} failed to deliver: {err}")
        if remaining or errors:
            # Offsets stay where they were: the engine rewinds and the records are redone.
            raise AbortableError(f"{remaining} {what} not acknowledged within "
                                 f"{self.timeout_s:.0f}s, delivery errors: {errors[:3]}")


class ExactlyOnce(Committer):
    transactional = True

    def __init__(self, consumer: Consumer, producer: Producer, collector: KafkaRecordCollector,
                 stats: EngineStats, timeout_s: float) -> None:
        super().__init__(consumer, producer, collector, stats, timeout_s)
        self._in_transaction = False

    @property
    def in_transaction(self) -> bool:
        return self._in_transaction

    def start(self) -> None:
        # Fences an earlier incarnation with the same transactional.id and aborts its open
        # transaction, so its partial outputs never become visible.
        _call(lambda: self.producer.init_transactions(self.timeout_s), "init_transactions",
              self.timeout_s)

    def before_batch(self, positions: list[TopicPartition]) -> None:
        if not self._in_transaction:                         # 1. begin
            _call(self.producer.begin_transaction, "begin_transaction", 0)
            self._in_transaction = True
        self.dirty = True

    def commit(self, tasks: Iterable[Task], offsets: list[TopicPartition]) -> None:
        tasks = list(tasks)
        if not self._in_transaction:
            for task in tasks:
                task.after_commit()
            self.dirty = False
            return
        for task in tasks:                                   # 3. changelog records
            task.prepare_commit()
        valid = [tp for tp in offsets if tp.offset >= 0]
        if valid:                                            # 4. offsets into the transaction
            metadata = self.consumer.consumer_group_metadata()
            _end_call(lambda: self.producer.send_offsets_to_transaction(
                valid, metadata, self.timeout_s), "send_offsets_to_transaction")
        _end_call(lambda: self.producer.commit_transaction(self.timeout_s),   # 5. commit
                  "commit_transaction")
        self._in_transaction = False
        _call(lambda: self.producer.poll(0), "poll", 0)  # changelog offsets (delivery reports)
        faults.maybe_crash("after_commit_before_flush")
        for task in tasks:                                   # 6. local stores
            task.after_commit()
        self.stats.commits += 1
        self.dirty = False

    def abort(self, tasks: Iterable[Task], after_error: bool = False) -> None:
        super().abort(tasks)  # local state first: whatever happens below, it is discarded
        if not self._in_transaction:
            return
        try:
            if not after_error:
                # librdkafka#4849: an EndTxn(abort) sent before the produced partitions were
                # added to the transaction fails fatally with INVALID_TXN_STATE. Delivering
                # first registers them; the records are then aborted with the rest. After an
                # error the producer may not deliver at all: a failed abort replaces it.
                _flush(self.producer, self.timeout_s, "flush before abort")
            _end_call(lambda: self.producer.abort_transaction(self.timeout_s),
                      "abort_transaction")
        except AbortableError as exc:
            # This producer cannot finish the abort; a new one with the same transactional.id
            # aborts the transaction on the broker when it initializes.
            raise AbortableError(f"abort failed: {exc}", producer_unusable=True) from exc
        self._in_transaction = False
        self.stats.aborts += 1

    def replace_clients(self, consumer: Consumer, producer: Producer) -> None:
        super().replace_clients(consumer, producer)
        self._in_transaction = False

    def close(self) -> None:
        if self._in_transaction:
            self.abort([])


def _call(op: Callable[[], object], what: str, retry_for_s: float) -> None:
    """One Kafka call; repeated while librdkafka calls the error retriable (and not abortable)
    for up to `retry_for_s`, then translated by kstream.runtime.kafka_errors."""
    deadline = time.monotonic() + retry_for_s
    while True:
        try:
            op()
            return
        except KafkaException as exc:
            err = kafka_error_of(exc)
            if (err is not None and err.retriable() and not err.txn_requires_abort()
                    and not err.fatal() and time.monotonic() < deadline):
                log.info("%s: retriable error %s, retrying", what, err)
                time.sleep(RETRY_BACKOFF_S)
                continue
            raise kafka_failure(exc, what) from exc


def _end_call(op: Callable[[], object], what: str) -> None:
    """A call that ends a transaction (offsets, commit, abort), made once.

    librdkafka allows resuming such a call after a retriable timeout, but resumed calls were
    seen to block far past their timeout after a broker restart (send_offsets_to_transaction
    never returned; librdkafka 2.16). So a timeout leaves the transaction to a new producer:
    AbortableError(producer_unusable=True), and the successor's init_transactions aborts it
    on the broker. That path always ends; the price is one init_transactions.
    """
    try:
        op()
    except KafkaException as exc:
        failure = kafka_failure(exc, what)
        err = kafka_error_of(exc)
        if isinstance(failure, AbortableError) and err is not None and err.retriable():
            raise AbortableError(str(failure), producer_unusable=True) from exc
        raise failure from exc


def _flush(producer: Producer, timeout_s: float, what: str) -> int:
    try:
        return producer.flush(timeout_s)
    except KafkaException as exc:
        raise kafka_failure(exc, what) from exc


def _commit_offsets(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        err = kafka_error_of(exc)
        if err is not None and err.code() in GROUP_CODES:
            raise TaskMigratedError(f"offset commit rejected ({err}): partitions moved") from exc
        raise kafka_failure(exc, "commit offsets") from exc


def make_committer(guarantee: str, consumer: Consumer, producer: Producer,
                   collector: KafkaRecordCollector, stats: EngineStats,
                   timeout_s: float) -> Committer:
    from kstream.config import AT_LEAST_ONCE, AT_MOST_ONCE

    kinds: dict[str, type[Committer]] = {AT_MOST_ONCE: AtMostOnce, AT_LEAST_ONCE: AtLeastOnce}
    return kinds.get(guarantee, ExactlyOnce)(consumer, producer, collector, stats, timeout_s)

