"""Where the engine's Kafka clients come from: one seam for tests and in-memory fakes."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer


class KafkaClients:
    """Builds the engine's producer and consumer. Tests subclass it to inject failures into
    real clients; the engine never calls the constructors itself."""

    def producer(self, config: dict[str, Any]) -> Producer:
        return Producer(config)

    def consumer(self, config: dict[str, Any]) -> Consumer:
        return Consumer(config)
