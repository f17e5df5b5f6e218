"""Sends the topology's output records to Kafka through the process's one producer.

Backpressure: when librdkafka's queue is full, `send` serves delivery reports until there is
room, up to a deadline; the engine is single-threaded, so no more input is consumed meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from kstream.errors import AbortableError, KStreamError, kafka_failure
from kstream.runtime.operator import Emitter
from kstream.runtime.stats import EngineStats

BACKPRESSURE_DEADLINE_S = 60.0


class KafkaRecordCollector:
    """Implements the task's RecordCollector on a confluent-kafka Producer."""

    def __init__(self, producer: Producer, stats: EngineStats,
                 partition_lookup: Callable[[str], int], *, transactional: bool = False) -> None:
        self._producer = producer
        # Under a transaction a failed record fails the commit: see send_changelogs.
        self.transactional = transactional
        # Positional: (topic, value, key, partition, callback, on_delivery, timestamp, headers);
        # keyword arguments cost twice as much in the C binding.
        self._produce: Callable[..., None] = producer.produce
        self._stats = stats
        self._partition_lookup = partition_lookup
        self._partition_counts: dict[str, int] = {}
        self.delivery_errors: list[KafkaError] = []
        self.last_timestamp: int | None = None  # of the latest output: end-to-end latency

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: list[tuple[str, bytes]] | None, partition: int = -1) -> None:
        # Invariant: fuse_send emits this same body for fused sinks; change both together.
        try:
            self._produce(topic, value, key, partition, None, None, timestamp, headers)
        except BufferError:
            self._wait_for_room(topic, key, value, timestamp, headers, partition)
        except KafkaException as exc:
            raise self._classify(exc, topic) from exc
        self._stats.records_out += 1
        self.last_timestamp = timestamp

    def fuse_send(self, em: Emitter, depth: int, topic: str, key: str, value: str) -> None:
        """Emit `send(topic, key, value, ts, headers)` inline for a fused sink (locals `ts`,
        `headers`): the same produce call, fallbacks and counters as `send` (in a run handler
        the counters are locals added once per run), one Python call fewer per output.
        `_produce` is looked up per call, as `rebind` replaces it."""
        me = em.bind(self, "collector")
        em.line(depth, "try:")
        em.line(depth + 1, f"{me}._produce({topic}, {value}, {key}, -1, None, None, ts, headers)")
        em.line(depth, "except BufferError:")
        em.line(depth + 1, f"{me}._wait_for_room({topic}, {key}, {value}, ts, headers, -1)")
        em.line(depth, f"except {em.bind(KafkaException, 'KafkaException')} as exc:")
        em.line(depth + 1, f"raise {me}._classify(exc, {topic}) from exc")
        counter = em.output_counter(self, self.add_outputs)
        if counter is None:
            em.line(depth, f"{em.bind(self._stats, 'stats')}.records_out += 1")
            em.line(depth, f"{me}.last_timestamp = ts")
        else:
            em.line(depth, f"{counter[0]} += 1; {counter[1]} = ts")

    def add_outputs(self, count: int, last_timestamp: int | None) -> None:
        """A run handler's outputs, counted in its locals (see `fuse_send`). A punctuator's
        output sent during the run may have been later than `last_timestamp`; the end-to-end
        latency meter then reads the run's last record instead (a run is at most a batch)."""
        self._stats.records_out += count
        self.last_timestamp = last_timestamp

    def _wait_for_room(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
                       headers: list[tuple[str, bytes]] | None, partition: int,
                       callback: Callable[[KafkaError | None, Any], None] | None = None) -> None:
        """Serve delivery reports until the queue has room. A queue that stays full means
        Kafka is not taking records (an outage): the interval is aborted and redone later."""
        deadline = time.monotonic() + BACKPRESSURE_DEADLINE_S
        while True:
            self._poll(0.05)
            try:
                self._produce(topic, value, key, partition, callback, None, timestamp, headers)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise AbortableError(
                        f"producer queue stayed full for {BACKPRESSURE_DEADLINE_S:.0f}s while "
                        f"sending to {topic}: Kafka is not acknowledging records") from None
            except KafkaException as exc:
                raise self._classify(exc, topic) from exc

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Callable[[KafkaError | None, Any], None]
                       ) -> None:
        """A store's changelog record; `on_delivery(err, msg)` learns its offset (msg.offset())."""
        errors = self.delivery_errors

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:  # the committer must see it before offsets are committed
                errors.append(err)
            on_delivery(err, msg)

        try:
            # The callback slot, not on_delivery: a positional None in `callback` disables both.
            self._produce(topic, value, key, partition, delivered, None, timestamp, None)
        except BufferError:
            self._wait_for_room(topic, key, value, timestamp, None, partition, delivered)
        except KafkaException as exc:
            raise self._classify(exc, topic) from exc

    def send_changelogs(self, topic: str, partition: int,
                        entries: Sequence[tuple[bytes, bytes | None]], timestamp: int,
                        on_delivery: Callable[[KafkaError | None, Any], None],
                        timestamps: Sequence[int] | None = None) -> None:
        """One commit's records of a store partition, in order; `on_delivery(err, msg)` learns
        their offsets.

        Inside a transaction only the last record reports: offsets grow in produce order within
        the partition, so its offset is the highest, and any failed record fails
        commit_transaction, so the store never applies writes whose changelog was lost. That
        saves a Python callback per changelog record (most of a stateful commit's cost).
        Outside a transaction every record reports, as `send_changelog` does. `timestamps`, if
        given, stamps each record (a timestamped store's); else all get `timestamp`.
        """
        if not entries:
            return
        errors = self.delivery_errors

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is not None:  # the committer must see it before offsets are committed
                errors.append(err)
            on_delivery(err, msg)

        produce = self._produce
        middle = None if self.transactional else delivered
        last = len(entries) - 1
        for i, (key, value) in enumerate(entries):
            callback = delivered if i == last else middle
            if timestamps is not None:
                timestamp = timestamps[i]
            try:
                # The callback slot, not on_delivery (see send_changelog); None falls back to
                # the producer-wide callback, which exists only outside transactions.
                produce(topic, value, key, partition, callback, None, timestamp, None)
            except BufferError:
                self._wait_for_room(topic, key, value, timestamp, None, partition, callback)
            except KafkaException as exc:
                raise self._classify(exc, topic) from exc

    def _classify(self, exc: KafkaException, topic: str) -> KStreamError:
        """produce() reports only a generic _FATAL (or _STATE for an abortable transaction);
        the producer's next call names the cause, which decides between rejoining, replacing
        the producer and stopping (see kstream.runtime.kafka_errors)."""
        err = exc.args[0]
        if err.code() == KafkaError._FATAL:
            try:
                self._producer.poll(0)
            except KafkaException as cause:
                return kafka_failure(cause, f"send to {topic}")
            return AbortableError(f"producing to {topic} failed: {err}", producer_unusable=True)
        return kafka_failure(exc, f"send to {topic}")

    def _poll(self, timeout_s: float) -> None:
        try:
            self._producer.poll(timeout_s)
        except KafkaException as exc:
            raise kafka_failure(exc, "poll") from exc

    def rebind(self, producer: Producer) -> None:
        """Send through a new producer (the old one was fenced)."""
        self._producer = producer
        self._produce = producer.produce

    def partition_count(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = self._partition_lookup(topic)
        return count

    def on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        """Producer-wide delivery callback: remember failures; the committer checks them."""
        if err is not None:
            self.delivery_errors.append(err)
