"""Restore stores from their changelogs, before their task processes anything.

Each logged store's changelog partition is read from the store's committed offset + 1 (or from
the beginning when the local state has none) to the end the consumer reports, with
read_committed so aborted transactions never reach the store. Records go straight to the
backend in batches, each batch written atomically together with the offset it reached, so an
interrupted restore resumes where it stopped. Nothing here waits forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from kstream.state.backend import TIMESTAMP_PREFIX, RestoreSink
from kstream.state.errors import RestoreInterrupted, StateCorruptedError, StateRestoreError

log = logging.getLogger("kstream.restore")

BATCH_RECORDS = 10_000
METADATA_BACKOFF_S = 0.2
PROGRESS_INTERVAL_S = 2.0
POLL_TIMEOUT_S = 0.2

_TRUNCATED = {KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE}


class RestoreBackend(Protocol):
    """What a restore needs of a backend (kstream.state.backend.Backend has it)."""

    @property
    def path(self) -> Path | None: ...

    @property
    def committed_offset(self) -> int | None: ...

    def begin_restore(self) -> RestoreSink: ...

    def finish_restore(self, sink: RestoreSink, offset: int) -> None: ...


class Restorable(Protocol):
    """A store restored from one changelog partition: a task's Restorable, or one source
    partition of a global store (kstream.state.global_store)."""

    @property
    def name(self) -> str: ...

    @property
    def changelog_topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def logging(self) -> bool: ...

    @property
    def task_dir(self) -> Path: ...

    @property
    def backend(self) -> RestoreBackend: ...


@dataclass(frozen=True)
class StoreRestore:
    """What one store's restore did; offsets are changelog positions (end exclusive)."""

    store: str
    topic: str
    partition: int
    start_offset: int
    end_offset: int
    records: int


@dataclass(frozen=True)
class RestoreReport:
    stores: list[StoreRestore]
    seconds: float

    @property
    def records(self) -> int:
        return sum(s.records for s in self.stores)

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(eq=False)
class _Target:
    """One changelog partition being restored into one store."""

    store: Restorable
    start: int
    end: int
    records: int = 0
    sink: Any = None
    last_msg: Any = None
    reached: int = field(default=-1)
    last_error: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.store.changelog_topic, self.store.partition

    def flush(self) -> None:
        """Write what this batch collected, together with the offset it reached."""
        if self.sink is None:
            return
        offset = self.last_msg.offset()
        self.store.backend.finish_restore(self.sink, offset)
        self.reached = offset + 1
        self.sink = None
        self.last_msg = None

    def progress(self, done: bool = False) -> StoreRestore:
        """Where the restore stands: start_offset is the position reached so far (the end
        once `done`, even when the changelog's last offset is a transaction marker)."""
        end = max(self.end, self.reached)
        return StoreRestore(self.store.name, self.store.changelog_topic, self.store.partition,
                            end if done else max(self.start, self.reached), end, self.records)

    def report(self) -> StoreRestore:
        return StoreRestore(self.store.name, self.store.changelog_topic, self.store.partition,
                            self.start, max(self.end, self.reached), self.records)


def restore_stores(bootstrap_servers: str, stores: Sequence[Restorable], timeout_s: float,
                   consumer_config: dict[str, Any] | None = None,
                   should_stop: Callable[[], bool] = lambda: False,
                   on_progress: Callable[[list[StoreRestore]], None] | None = None
                   ) -> RestoreReport:
    """Bring every logged store up to the end of its changelog partition.

    `consumer_config` adds client settings (security, tuning). `on_progress(reports)` hears
    about each changelog partition once the plan is made, after every applied batch and at the
    end: `StoreRestore`s whose `end_offset` is where the restore will stop and whose
    `start_offset` moves up to it as records are applied. Raises StateCorruptedError when
    local state does not fit its changelog, StateRestoreError on a fatal Kafka error or when
    the deadline passes (transient errors, e.g. a broker that just restarted and is not leader
    yet, are retried until then), RestoreInterrupted when `should_stop()` turns true.
    """
    began = time.monotonic()
    deadline = began + timeout_s
    logged = [s for s in stores if s.logging]
    if not logged:
        return RestoreReport([], 0.0)
    consumer = Consumer(_config(bootstrap_servers, consumer_config))
    try:
        try:
            targets = _plan(consumer, logged, deadline, should_stop)
        except KafkaException as exc:
            raise StateRestoreError(f"cannot read changelog metadata from {bootstrap_servers} "
                                    f"within {timeout_s:.0f}s: {exc}") from exc
        active = [t for t in targets if t.start < t.end]

        def progress() -> None:
            if on_progress is not None:
                on_progress([t.progress() for t in targets])

        progress()
        if active:
            consumer.assign([TopicPartition(*t.key, _start_position(t)) for t in active])
            _consume(consumer, active, began, deadline, timeout_s, should_stop, progress)
    finally:
        consumer.close()
    report = RestoreReport([t.report() for t in targets], time.monotonic() - began)
    if on_progress is not None:
        on_progress([t.progress(done=True) for t in targets])
    if report.records:
        log.info("restored %d records into %d stores in %.1fs (%.0f records/s)",
                 report.records, len(report.stores), report.seconds, report.records_per_s)
    return report


def _config(bootstrap_servers: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        # The client insists on a group id; we only assign() and never commit, so no group forms.
        "group.id": "kstream-restore",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "auto.offset.reset": "error",  # a position outside the log is an error, never a skip
        # Large fetches, a small prefetch queue (the defaults hold ~100k messages per partition)
        # and no 1 s pause each time that queue is full: >300k records/s at <100 MB RSS.
        "max.partition.fetch.bytes": 2 << 20,
        "fetch.max.bytes": 8 << 20,
        "queued.min.messages": 20_000,
        "queued.max.messages.kbytes": 8192,
        "fetch.queue.backoff.ms": 10,
        # A restore ends at an end offset, often a transaction marker with no record after
        # it: the broker answers an empty fetch after this long, so a store with nothing to
        # restore (a standby's, a restart's) is ready in milliseconds, not 500 ms.
        "fetch.wait.max.ms": 10,
        **(extra or {}),
    }


def _start_position(target: _Target) -> int:
    return OFFSET_BEGINNING if target.store.backend.committed_offset is None else target.start


def _plan(consumer: Consumer, stores: list[Restorable], deadline: float,
          should_stop: Callable[[], bool]) -> list[_Target]:
    """Where each store's restore starts and ends; refuse state that does not fit its log."""
    targets = []
    for store in stores:
        topic, partition = store.changelog_topic, store.partition
        offset = store.backend.committed_offset
        md = _retrying(partial(_topic_metadata, consumer, store, deadline), store, deadline,
                       should_stop)
        if md is None or partition not in md.partitions:
            if offset is not None:
                raise _corrupted(store, f"changelog {topic}[{partition}] does not exist but the "
                                        f"local state is at its offset {offset}")
            log.warning("store %r: changelog %s[%d] does not exist; nothing to restore",
                        store.name, topic, partition)
            targets.append(_Target(store, 0, 0))
            continue
        low, high = _retrying(partial(_watermarks, consumer, store, deadline), store, deadline,
                              should_stop)
        if offset is None:
            targets.append(_Target(store, low, high))
            continue
        if not low <= offset + 1 <= high:
            raise _corrupted(store, f"the local state is at changelog offset {offset} but "
                                    f"{topic}[{partition}] holds offsets {low}..{high - 1}")
        targets.append(_Target(store, offset + 1, high))
    return targets


def _topic_metadata(consumer: Consumer, store: Restorable, deadline: float) -> Any:
    """The changelog's metadata, None when the topic does not exist; a transient metadata
    error (leader not available yet) raises, to be retried."""
    topic = store.changelog_topic
    md = consumer.list_topics(topic, timeout=min(_left(deadline, store), 10)).topics.get(topic)
    if md is None:
        return None
    if md.error is not None:
        if md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise KafkaException(md.error)
    return md


def _watermarks(consumer: Consumer, store: Restorable, deadline: float) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(
        TopicPartition(store.changelog_topic, store.partition),
        timeout=min(_left(deadline, store), 10), cached=False)
    return low, high


T = TypeVar("T")


def _retrying(op: Callable[[], T], store: Restorable, deadline: float,
              should_stop: Callable[[], bool]) -> T:
    """`op()` until it succeeds or the deadline passes: right after a broker restart the
    metadata calls answer NOT_LEADER_FOR_PARTITION or time out for a while. Fatal errors
    (authorization, configuration) raise at once."""
    from kstream.runtime.kafka_errors import ErrorClass, classify, kafka_error_of

    while True:
        if should_stop():
            raise RestoreInterrupted(f"store {store.name!r}: stop requested during restore")
        try:
            return op()
        except KafkaException as exc:
            err = kafka_error_of(exc)
            if err is not None and classify(err) is ErrorClass.FATAL:
                raise StateRestoreError(f"store {store.name!r}: reading metadata of changelog "
                                        f"{store.changelog_topic} failed: {err}") from exc
            if time.monotonic() + METADATA_BACKOFF_S >= deadline:
                raise StateRestoreError(
                    f"store {store.name!r}: changelog {store.changelog_topic} metadata still "
                    f"unavailable at the restore deadline: {exc}") from exc
            log.info("restore: metadata of %s not available yet (%s), retrying",
                     store.changelog_topic, exc)
            time.sleep(METADATA_BACKOFF_S)


def _left(deadline: float, store: Restorable) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise StateRestoreError(f"store {store.name!r}: restore deadline passed while reading "
                                f"changelog metadata of {store.changelog_topic}")
    return left


def _corrupted(store: Restorable, what: str) -> StateCorruptedError:
    where = store.backend.path or store.task_dir
    return StateCorruptedError(
        f"store {store.name!r} (task dir {store.task_dir}, partition {store.partition}): {what}; "
        "the changelog was truncated, deleted or recreated under the store. To rebuild it from "
        f"the changelog, delete the store directory {where} and restart, or reset the "
        "application (delete its state directories and internal topics).")


def _consume(consumer: Consumer, active: list[_Target], began: float, deadline: float,
             timeout_s: float, should_stop: Callable[[], bool],
             progress: Callable[[], None] = lambda: None) -> None:
    by_key = {t.key: t for t in active}
    pending = dict(by_key)
    total = sum(t.end - t.start for t in active)
    log.info("restoring %d changelog partitions, up to %d records", len(active), total)
    done = 0
    last_log = began
    while pending:
        now = time.monotonic()
        if now >= deadline:
            raise _timeout(pending, done, total, timeout_s)
        if should_stop():
            raise RestoreInterrupted(f"stop requested during restore ({done}/{total} records)")
        msgs = consumer.consume(BATCH_RECORDS, min(POLL_TIMEOUT_S, deadline - now))
        if not msgs:
            continue
        done += _apply_batch(msgs, by_key, pending)
        progress()
        now = time.monotonic()
        if now - last_log >= PROGRESS_INTERVAL_S:
            last_log = now
            rate = done / max(now - began, 1e-9)
            eta = max(total - done, 0) / rate if rate else float("inf")
            log.info("restoring: %d/%d records (%.0f records/s), about %.0fs left",
                     done, total, rate, eta)


def _apply_batch(msgs: list[Any], by_key: dict[tuple[str, int], _Target],
                 pending: dict[tuple[str, int], _Target]) -> int:
    """Apply one consumed batch; the loop stays lean because it runs once per record."""
    touched: list[_Target] = []
    target: _Target | None = None
    cur_topic: str | None = None
    cur_part = -1
    put = delete = None
    stamped = False
    last = None
    count = 0
    seg_start = 0  # count when the current target's run of records began
    for msg in msgs:
        if msg.error() is not None:
            _on_error(msg, by_key, pending)
            continue
        part = msg.partition()
        topic = msg.topic()
        if part != cur_part or topic != cur_topic:
            if target is not None:
                target.last_msg = last
                target.records += count - seg_start
                seg_start = count
            target = by_key[(topic, part)]
            cur_topic, cur_part = topic, part
            if target.sink is None:
                target.sink = target.store.backend.begin_restore()
                touched.append(target)
            put, delete = target.sink.put, target.sink.delete
            stamped = getattr(target.store, "timestamped", False)
        key = msg.key()
        last = msg
        count += 1
        if key is None:
            continue  # no state to keep (a global table's topic may hold such records)
        value = msg.value()
        if value is None:
            delete(key)  # type: ignore[misc]
        elif stamped:  # a timestamped store: its entries start with the record timestamp
            put(key, TIMESTAMP_PREFIX.pack(msg.timestamp()[1]) + value)  # type: ignore[misc]
        else:
            put(key, value)  # type: ignore[misc]
    if target is not None:
        target.last_msg = last
        target.records += count - seg_start
    for t in touched:
        t.flush()
    return count


def _on_error(msg: Any, by_key: dict[tuple[str, int], _Target],
              pending: dict[tuple[str, int], _Target]) -> None:
    err: KafkaError = msg.error()
    key = (msg.topic(), msg.partition())
    if err.code() == KafkaError._PARTITION_EOF:
        target = pending.pop(key, None)
        if target is not None:
            target.end = max(target.end, msg.offset())
        return
    target = by_key.get(key)
    if err.code() in _TRUNCATED and target is not None:
        raise _corrupted(target.store, f"changelog {key[0]}[{key[1]}] lost the records to "
                                       f"restore ({err.str()})")
    if err.fatal():
        raise StateRestoreError(f"restoring from {key[0]}[{key[1]}] failed: {err.str()}")
    # Anything else (broker down, leader moving, topic briefly unknown) the client retries;
    # the deadline bounds how long, and the timeout error names the last error seen.
    if target is not None:
        target.last_error = err.str()
    log.warning("restore: error on %s[%s]: %s", key[0], key[1], err.str())


def _timeout(pending: dict[tuple[str, int], _Target], done: int, total: int,
             timeout_s: float) -> StateRestoreError:
    names = ", ".join(
        f"{t.store.name} ({k[0]}[{k[1]}]{', last error: ' + t.last_error if t.last_error else ''})"
        for k, t in list(pending.items())[:5])
    return StateRestoreError(
        f"restore did not finish within {timeout_s:.0f}s ({done}/{total} records applied; "
        f"still restoring: {names}). Progress is kept; raise the restore timeout, or check "
        "that the brokers are reachable and no transaction is left open on the changelog.")
