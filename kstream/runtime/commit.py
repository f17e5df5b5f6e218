"""The commit protocol, one class per processing guarantee, each step numbered in order.

Exactly-once (KIP-447, one transactional producer per process):
  1. begin_transaction (lazily, before the first record of a commit interval is processed)
  2. process records; outputs and DLQ records are produced inside the transaction
  3. tasks produce their stores' changelog records (prepare_commit)
  4. send_offsets_to_transaction(consumed positions, consumer group metadata)
  5. commit_transaction
  6. only now tasks apply buffered store writes locally (after_commit)
  On an abortable error: abort_transaction, tasks drop buffered writes, consumer rewinds to the
  committed offsets.

At-least-once: 2 process, 3 changelog, flush the producer (every output acknowledged),
  4 commit offsets, 6 apply stores. At-most-once: offsets of a batch are committed before it is
  processed; outputs are flushed at the commit tick.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kstream.errors import (
    FatalError,
    ProducerFencedError,
    TaskMigratedError,
    is_fenced,
    producer_error,
)
from kstream.runtime import faults
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import Task

log = logging.getLogger("kstream.commit")

RETRY_DEADLINE_S = 60.0


class TransactionAborted(Exception):
    """The open transaction was aborted; the engine must rewind to the committed offsets."""


class Committer(abc.ABC):
    """Base: what the engine calls around batches; subclasses implement the guarantee."""

    transactional = False

    def __init__(self, consumer: Consumer, producer: Producer, collector: KafkaRecordCollector,
                 stats: EngineStats, timeout_s: float) -> None:
        self.consumer = consumer
        self.producer = producer
        self.collector = collector
        self.stats = stats
        self.timeout_s = timeout_s
        self.dirty = False  # records processed since the last commit

    def start(self) -> None:  # noqa: B027 - optional hook
        """Once, before the first batch."""

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
        self.dirty = False

    def close(self) -> None:
        _flush(self.producer, self.timeout_s, "flush")


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
        self._flush_acknowledged("output records")
        for task in tasks:                                   # 3. changelog records
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
        if remaining:
            raise FatalError(f"{remaining} {what} not acknowledged within {self.timeout_s}s")
        if self.collector.delivery_errors:
            errors = self.collector.delivery_errors[:3]
            raise FatalError(f"{what} failed to deliver, offsets not committed: {errors}")


class ExactlyOnce(Committer):
    transactional = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.in_transaction = False

    def start(self) -> None:
        # Fences an earlier incarnation with the same transactional.id and aborts its open
        # transaction, so its partial outputs never become visible.
        _retry(lambda: self.producer.init_transactions(self.timeout_s), "init_transactions")

    def before_batch(self, positions: list[TopicPartition]) -> None:
        if not self.in_transaction:                          # 1. begin
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                if is_fenced(exc.args[0]):
                    raise ProducerFencedError(f"producer fenced: {exc.args[0]}") from exc
                raise
            self.in_transaction = True
        self.dirty = True

    def commit(self, tasks: Iterable[Task], offsets: list[TopicPartition]) -> None:
        tasks = list(tasks)
        if not self.in_transaction:
            for task in tasks:
                task.after_commit()
            return
        try:
            for task in tasks:                               # 3. changelog records
                task.prepare_commit()
            valid = [tp for tp in offsets if tp.offset >= 0]
            if valid:                                        # 4. offsets into the transaction
                metadata = self.consumer.consumer_group_metadata()
                self.producer.send_offsets_to_transaction(valid, metadata, self.timeout_s)
            self.producer.commit_transaction(self.timeout_s)  # 5. commit
            self.producer.poll(0)  # serve changelog delivery reports (their offsets) now
        except KafkaException as exc:
            self._on_transaction_error(exc, tasks)
            raise TransactionAborted(str(exc)) from exc
        self.in_transaction = False
        faults.maybe_crash("after_commit_before_flush")
        for task in tasks:                                   # 6. local stores
            task.after_commit()
        self.stats.commits += 1
        self.dirty = False

    def _on_transaction_error(self, exc: KafkaException, tasks: list[Task]) -> None:
        err: KafkaError = exc.args[0]
        if is_fenced(err):
            raise ProducerFencedError(f"producer fenced during commit: {err}") from exc
        if err.fatal():
            raise FatalError(
                f"transactional producer hit a fatal error ({err}); another instance may be "
                "using the same transactional.id (state directory)") from exc
        if err.txn_requires_abort() or err.retriable():
            log.warning("transaction failed (%s); aborting and rewinding", err)
            self.abort(tasks, after_error=True)
            return
        raise FatalError(f"transaction failed: {err}") from exc

    def abort(self, tasks: Iterable[Task], after_error: bool = False) -> None:
        if self.in_transaction:
            if not after_error:
                # librdkafka#4849: an EndTxn(abort) sent before the produced partitions were
                # added to the transaction fails fatally with INVALID_TXN_STATE. Delivering
                # first registers them; the records are then aborted with the rest.
                _flush(self.producer, self.timeout_s, "flush")
            try:
                _retry(lambda: self.producer.abort_transaction(self.timeout_s), "abort")
            except KafkaException as exc:
                if is_fenced(exc.args[0]):
                    raise ProducerFencedError(f"producer fenced: {exc.args[0]}") from exc
                raise FatalError(f"abort_transaction failed: {exc}") from exc
            self.in_transaction = False
            self.stats.aborts += 1
        super().abort(tasks)

    def replace_producer(self, producer: Producer) -> None:
        """After fencing: forget the void transaction and start over with a new producer."""
        self.producer = producer
        self.in_transaction = False
        self.dirty = False
        self.start()

    def close(self) -> None:
        if self.in_transaction:
            self.abort([])


def _flush(producer: Producer, timeout_s: float, what: str) -> int:
    try:
        return producer.flush(timeout_s)
    except KafkaException as exc:
        raise producer_error(exc, what) from exc


def _commit_offsets(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        if err.code() in (KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                          KafkaError.REBALANCE_IN_PROGRESS, KafkaError.FENCED_INSTANCE_ID):
            raise TaskMigratedError(f"offset commit rejected ({err}): partitions moved") from exc
        raise


def _retry(op: object, what: str) -> None:
    """Run a transactional call again while Kafka says the error is retriable."""
    deadline = time.monotonic() + RETRY_DEADLINE_S
    while True:
        try:
            op()  # type: ignore[operator]
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if not err.retriable() or time.monotonic() > deadline:
                raise
            log.info("%s: retriable error %s, retrying", what, err)
            time.sleep(0.1)


def make_committer(guarantee: str, *args: object) -> Committer:
    from kstream.config import AT_LEAST_ONCE, AT_MOST_ONCE

    kinds: dict[str, type[Committer]] = {AT_MOST_ONCE: AtMostOnce, AT_LEAST_ONCE: AtLeastOnce}
    return kinds.get(guarantee, ExactlyOnce)(*args)  # type: ignore[arg-type]
