"""librdkafka settings for the engine's producer and consumer, derived from AppConfig."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kstream.config import AT_MOST_ONCE, AppConfig
from kstream.hosts import advertised_client_id
from kstream.runtime.client_logs import client_logger


def producer_config(cfg: AppConfig, transactional_id: str | None, logs_changelogs: bool,
                    on_delivery: Callable[[Any, Any], None],
                    on_error: Callable[[Any], None]) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "linger.ms": 5,
        # Java clients' partitioner, so keys land where Kafka Streams/Java producers put them.
        "partitioner": "murmur2_random",
        "enable.idempotence": cfg.processing_guarantee != AT_MOST_ONCE,
        # Broker-wide trouble (all brokers down) arrives here, not as an exception: the engine
        # only logs it (rate-limited) and marks itself not ready; calls fail on their own.
        "error_cb": on_error,
        "logger": client_logger(),
        **cfg.producer_config,
    }
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = cfg.transaction_timeout_ms
    else:
        conf["on_delivery"] = on_delivery
        if not logs_changelogs:
            # Only failures matter when no changelog offsets are learned from reports;
            # a Python callback per delivered record is the largest at-least-once cost.
            conf["delivery.report.only.error"] = True
    return conf


def consumer_config(cfg: AppConfig, on_stats: Callable[[str], None],
                    on_error: Callable[[Any], None], *,
                    partition_eof: bool = False,
                    group_instance_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.bootstrap_servers,
        "group.id": cfg.application_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": cfg.auto_offset_reset,
        "isolation.level": "read_committed" if cfg.exactly_once else "read_uncommitted",
        # Range keeps partition N of co-partitioned topics on the same instance.
        "partition.assignment.strategy": "range",
        "session.timeout.ms": cfg.session_timeout_ms,
        # Members hear of a rebalance at their next heartbeat, and an eager rebalance waits
        # for the last one to rejoin (seen in bench/failover.py: a survivor rejoined 0.8 s
        # after the other), which every partition's pause includes: a twentieth of the
        # session timeout, between 100 ms and 1 s (300 ms at 6 s, 500 ms at the default
        # 10 s), so a long session timeout (static membership) does not slow hand-overs.
        "heartbeat.interval.ms": max(100, min(1000, cfg.session_timeout_ms // 20)),
        # Lag comes from librdkafka's statistics: no extra requests, parsed every 10 s.
        "statistics.interval.ms": 10_000,
        "stats_cb": on_stats,
        "error_cb": on_error,
        "logger": client_logger(),
        **cfg.consumer_config,
    }
    if group_instance_id is not None:
        # Static membership (KIP-345): librdkafka's range assignor orders static members by
        # this id, so the assignment of a stable set of instances is stable across restarts
        # (kstream.runtime.standby predicts failovers from that order).
        conf["group.instance.id"] = group_instance_id
    if partition_eof:
        # Timestamp ordering across a task's partitions needs to know which are at their end
        # (kstream.runtime.ordering); the events never reach tasks.
        conf["enable.partition.eof"] = True
    if cfg.advertised_server is not None:
        # The query endpoint rides in the group membership (see kstream.hosts).
        conf["client.id"] = advertised_client_id(
            str(cfg.consumer_config.get("client.id", cfg.application_id)),
            cfg.advertised_server)
    return conf
