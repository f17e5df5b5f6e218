"""A tiny real-Kafka collector for store tests: the send_changelog part of the engine's one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer


class ProducerCollector:
    """send_changelog on a confluent Producer, optionally transactional."""

    def __init__(self, bootstrap_servers: str, transactional_id: str | None = None,
                 **config: Any) -> None:
        cfg: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "linger.ms": 5,
                               "enable.idempotence": True, **config}
        if transactional_id is not None:
            cfg["transactional.id"] = transactional_id
        self.producer = Producer(cfg)
        self.sent = 0
        if transactional_id is not None:
            self.producer.init_transactions(30)

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None:
        # The callback goes in the 5th positional slot: confluent-kafka 2.16 ignores the 6th
        # (the on_delivery alias) when the 5th is None (see test_delivery_callback_slot).
        self.producer.produce(topic, value, key, partition, on_delivery, None, timestamp, None)
        self.sent += 1

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self.producer.flush(timeout)
        assert remaining == 0, f"{remaining} changelog records not acknowledged in {timeout}s"
