"""Where the engine's Kafka clients come from: one seam for tests and in-memory fakes."""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

_admin_lock = threading.Lock()


class KafkaClients:
    """Builds the engine's producer and consumer. Tests subclass it to inject failures into
    real clients; the engine never calls the constructors itself."""

    def producer(self, config: dict[str, Any]) -> Producer:
        return Producer(config)

    def consumer(self, config: dict[str, Any]) -> Consumer:
        return Consumer(config)

    def admin(self, config: dict[str, Any]) -> AdminClient:
        """The engine's AdminClient for `config`: made on first use, then shared. Standby
        placement and the exactly-once hand-over ask the coordinator the same question (the
        group's description); one client means one set of broker connections and threads
        instead of one per feature. Thread-safe (the hand-over runs in its own thread)."""
        key = repr(sorted(config.items()))
        with _admin_lock:
            admins: dict[str, AdminClient] = self.__dict__.setdefault("_admins", {})
            admin = admins.get(key)
            if admin is None:
                admin = admins[key] = AdminClient(config)
            return admin
