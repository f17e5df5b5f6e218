"""The instance's global stores: bootstrapped before any processing, then kept current.

1. `bootstrap`: every partition of every global topic is read (read_committed) from the local
   checkpoint to the end offsets, through the ordinary restore (kstream.state.restore), with
   its progress logs and metrics. The engine subscribes to its inputs only afterwards, so no
   record is processed against a global table that is not caught up.
2. `poll`: once per engine loop iteration, at most POLL_RECORDS records that arrived since are
   applied, each batch written atomically with the offsets it reaches (the checkpoint), so a
   restart reads only the tail.

The consumer is assigned every partition (`assign()`, no group): every instance holds all of
each topic. Updates apply as they are read, not inside the processing transaction: a global
table is a cache of its topic, as in Kafka Streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from kstream.errors import FatalError
from kstream.state.backend import Entry
from kstream.state.global_store import GlobalStore
from kstream.state.restore import RestoreReport, StoreRestore, restore_stores
from kstream.topology import Topology

log = logging.getLogger("kstream.global")

POLL_RECORDS = 5_000  # bounded work per loop iteration
ERROR_LOG_INTERVAL_S = 10.0  # transient read errors (a broker away) repeat every poll


class GlobalStateMaintainer:
    """Owns the global stores of one instance (built under `state_root/global/`)."""

    def __init__(self, topology: Topology, state_root: Path) -> None:
        self.stores: dict[str, GlobalStore] = {
            name: spec.build(state_root) for name, spec in topology.global_stores.items()}
        self._by_topic = {store.topic: store for store in self.stores.values()}
        self._consumer: Consumer | None = None
        self.bootstrapped = 0  # records read by the last bootstrap
        self.updated = 0  # records applied since
        self._error_logged = -ERROR_LOG_INTERVAL_S

    def __bool__(self) -> bool:
        return bool(self.stores)

    def bootstrap(self, bootstrap_servers: str, partitions: dict[str, int], timeout_s: float,
                  client_config: dict[str, Any], should_stop: Callable[[], bool],
                  on_progress: Callable[[list[StoreRestore]], None] | None = None
                  ) -> RestoreReport:
        """Read every global topic to its end offsets (see the module docstring, step 1)."""
        targets = [target for store in self.stores.values()
                   for target in store.restore_targets(partitions[store.topic])]
        for store in self.stores.values():
            log.info("event=global_bootstrap_start store=%s topic=%s partitions=%d "
                     "checkpoint=%s", store.name, store.topic, partitions[store.topic],
                     store.offsets() or "-")
        report = restore_stores(bootstrap_servers, targets, timeout_s, client_config,
                                should_stop=should_stop, on_progress=on_progress)
        self.bootstrapped = report.records
        for name in self.stores:
            parts = [s for s in report.stores if s.store == name]
            records = sum(s.records for s in parts)
            log.info("event=global_bootstrap_done store=%s records=%d seconds=%.2f "
                     "records_per_s=%.0f", name, records, report.seconds,
                     records / report.seconds if report.seconds > 0 else 0.0)
        return report

    def start(self, consumer: Consumer, partitions: dict[str, int]) -> None:
        """Follow every partition from the checkpoint the bootstrap reached (step 2)."""
        self._consumer = consumer
        assignment = []
        for store in self.stores.values():
            offsets = store.offsets()
            for partition in range(partitions[store.topic]):
                at = offsets.get(partition)
                assignment.append(TopicPartition(store.topic, partition,
                                                 OFFSET_BEGINNING if at is None else at + 1))
        consumer.assign(assignment)

    def poll(self) -> int:
        """Apply what arrived since the last call (at most POLL_RECORDS); the count applied."""
        consumer = self._consumer
        if consumer is None:
            return 0
        msgs = consumer.consume(POLL_RECORDS, 0)
        if not msgs:
            return 0
        return self.apply(msgs)

    def apply(self, msgs: list[Any]) -> int:
        """Apply consumed records (a list of Kafka messages) store by store, each with the
        offsets its records reach, in one write per store."""
        batches: dict[str, tuple[list[Entry], dict[int, int]]] = {}
        count = 0
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._on_error(msg, err)
                continue
            topic = msg.topic()
            entries, offsets = batches.setdefault(topic, ([], {}))
            key = msg.key()
            if key is not None:  # a record without a key cannot be looked up
                entries.append((key, msg.value()))
            offsets[msg.partition()] = msg.offset()
            count += 1
        for topic, (entries, offsets) in batches.items():
            self._by_topic[topic].apply(entries, offsets)
        self.updated += count
        return count

    def _on_error(self, msg: Any, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        where = f"{msg.topic()}[{msg.partition()}]"
        if err.fatal() or err.code() in (KafkaError._AUTO_OFFSET_RESET,
                                         KafkaError.OFFSET_OUT_OF_RANGE):
            raise FatalError(f"global table topic {where}: {err.str()} (a checkpoint outside "
                             "the topic: delete the instance's state directory to rebuild the "
                             "global stores from the topic)")
        # Anything else the client retries by itself (a broker away, a leader moving).
        now = time.monotonic()
        if now - self._error_logged >= ERROR_LOG_INTERVAL_S:
            self._error_logged = now
            log.warning("event=global_read_error topic=%s error=%s", where, err.str())

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.warning("event=global_consumer_close_failed error=%s", exc)
        for store in self.stores.values():
            store.close()


def global_consumer_config(bootstrap_servers: str, application_id: str,
                           client_config: dict[str, Any]) -> dict[str, Any]:
    """A non-group consumer (assign only, never commits): read_committed, as restores."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": f"{application_id}-global",  # required by the client; no group forms
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 8192,
        "client.id": f"{application_id}-global",
        **client_config,
    }
