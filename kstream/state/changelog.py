"""The change-logging layer: sends a commit's writes to the changelog, learns their offsets.

It sits between the write buffer and the backend. `send` runs inside the commit (step 3), and
`apply` after Kafka accepted it (step 6), writing the data together with the highest changelog
offset Kafka acknowledged, so a restore knows where the local state stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, cast

from kstream.state.backend import TIMESTAMP_PREFIX, Backend, Entry
from kstream.state.errors import ChangelogWriteError


class ChangelogCollector(Protocol):
    """The part of the task's RecordCollector a store uses."""

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None: ...


class BulkChangelogCollector(ChangelogCollector, Protocol):
    """A collector that sends a commit's records of one store partition in one call
    (KafkaRecordCollector.send_changelogs); the layer uses it when the collector has it."""

    def send_changelogs(self, topic: str, partition: int,
                        entries: Sequence[tuple[bytes, bytes | None]], timestamp: int,
                        on_delivery: Callable[[Any, Any], None],
                        timestamps: Sequence[int] | None = None) -> None: ...


class ChangeloggingLayer:
    """Logs entries to `topic`/`partition`, then applies them with the acknowledged offset."""

    def __init__(self, backend: Backend, store_name: str, topic: str, partition: int,
                 timestamped: bool = False) -> None:
        self.backend = backend
        # Entries of a timestamped store (kstream.state.kv.TimestampedKeyValueStore) start with
        # their timestamp: the changelog gets the plain value, stamped with it.
        self.timestamped = timestamped
        self.store_name = store_name
        self.topic = topic
        self.partition = partition
        self._acked = -1
        self._errors: list[Any] = []
        self._generation = 0  # bumped on discard: late failures of aborted sends are not ours
        # Reads go straight to the backend.
        self.get = backend.get
        self.range: Callable[[bytes | None, bytes | None], Iterator[tuple[bytes, bytes]]] = (
            backend.range)
        self.approximate_count = backend.approximate_count

    def send(self, entries: list[Entry], collector: ChangelogCollector) -> None:
        """Produce one changelog record per entry, stamped with the commit's wall-clock time
        (a timestamped store's entries: with their own timestamp, when they have one)."""
        if not entries:
            return
        timestamp = int(time.time() * 1000)
        timestamps: list[int] | None = None
        if self.timestamped:
            entries, timestamps = _split_timestamps(entries, timestamp)
        topic, partition = self.topic, self.partition
        on_delivery = self._delivery_callback()
        bulk = getattr(collector, "send_changelogs", None)
        if bulk is not None:
            cast(BulkChangelogCollector, collector).send_changelogs(
                topic, partition, entries, timestamp, on_delivery, timestamps)
            return
        send = collector.send_changelog
        for i, (key, value) in enumerate(entries):
            send(topic, partition, key, value,
                 timestamp if timestamps is None else timestamps[i], on_delivery)

    def _delivery_callback(self) -> Callable[[Any, Any], None]:
        generation = self._generation

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                if generation == self._generation:
                    self._errors.append(err)
                return
            offset = msg.offset()
            if offset is not None and offset > self._acked:
                self._acked = offset

        return on_delivery

    def apply(self, entries: list[Entry]) -> None:
        """Write entries locally with the highest acknowledged offset.

        An offset not yet acknowledged only makes a later restore replay a little more, which is
        harmless; a record Kafka rejected would make local state disagree with the changelog.
        """
        if self._errors:
            errors, self._errors = self._errors[:3], []
            raise ChangelogWriteError(
                f"store {self.store_name!r}: changelog {self.topic}[{self.partition}] rejected "
                f"records ({errors}); the buffered writes were not applied locally")
        known = self.backend.committed_offset
        offset = self._acked if self._acked >= 0 and (known is None or self._acked > known) \
            else None
        if entries or offset is not None:
            self.backend.write(entries, offset)

    def discard(self) -> None:
        self._generation += 1
        self._errors.clear()


MAX_FUTURE_MS = 50 * 60 * 1000
"""How far past the commit's wall-clock time a changelog record may be stamped. Kafka 4
brokers reject records more than `message.timestamp.after.max.ms` (1 hour by default) in the
future, which would fail the commit; an aggregate of records dated further ahead (a bogus
event time, a skewed clock) is logged with this bound instead, and restores with it."""


def _split_timestamps(entries: list[Entry], now: int) -> tuple[list[Entry], list[int]]:
    """Plain values and record timestamps of timestamped entries. A delete, or an entry
    written without a timestamp (negative), is stamped `now`; none later than now +
    MAX_FUTURE_MS."""
    plain: list[Entry] = []
    stamps: list[int] = []
    unpack = TIMESTAMP_PREFIX.unpack_from
    latest = now + MAX_FUTURE_MS
    for key, value in entries:
        if value is None:
            plain.append((key, None))
            stamps.append(now)
        else:
            ts = unpack(value)[0]
            plain.append((key, value[8:]))
            stamps.append(now if ts < 0 else ts if ts <= latest else latest)
    return plain, stamps


class UnloggedLayer:
    """Logging disabled: nothing is sent; commits go straight to the backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.get = backend.get
        self.range = backend.range
        self.approximate_count = backend.approximate_count

    def send(self, entries: list[Entry], collector: ChangelogCollector) -> None:
        return None

    def apply(self, entries: list[Entry]) -> None:
        if entries:
            self.backend.write(entries, None)

    def discard(self) -> None:
        return None
