"""Start-up topic checks: inputs and outputs must exist (or be created when configured);
internal topics (dead-letter, changelogs, repartition) are created by kstream itself."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kstream.config import ERROR_DEAD_LETTER, AppConfig
from kstream.errors import MissingTopicsError
from kstream.topology import Topology

log = logging.getLogger("kstream.topics")


def ensure_topics(topology: Topology, config: AppConfig,
                  internal: dict[str, tuple[int, dict[str, str]]] | None = None) -> None:
    """Check user topics, create internal ones. `internal`: name -> (partitions, topic config)."""
    admin = AdminClient({"bootstrap.servers": config.bootstrap_servers})
    existing = admin.list_topics(timeout=30).topics
    user_topics = list(dict.fromkeys(topology.source_topics + topology.sink_topics()))
    wanted_internal = dict(internal or {})
    if config.error_policy == ERROR_DEAD_LETTER:
        wanted_internal.setdefault(config.dlq_topic, (1, {}))
    missing_user = [t for t in user_topics if t not in existing and t not in wanted_internal]
    if missing_user and not config.auto_create_topics:
        raise MissingTopicsError(
            f"topics do not exist: {', '.join(missing_user)}. Create them, or set "
            f"auto_create_topics=True (with topic_partitions=N) to let kstream create them.")
    to_create = {t: (config.topic_partitions, {}) for t in missing_user}
    to_create.update({t: spec for t, spec in wanted_internal.items() if t not in existing})
    if to_create:
        create(admin, to_create)


def create(admin: AdminClient, topics: dict[str, tuple[int, dict[str, str]]],
           timeout: float = 30.0) -> None:
    # Replication -1: the broker's default.replication.factor (KIP-464).
    new = [NewTopic(name, partitions, -1, config=conf)
           for name, (partitions, conf) in topics.items()]
    for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            fut.result(timeout=timeout)
            log.info("event=create_topic topic=%s partitions=%d", name, topics[name][0])
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(name in md and all(p.leader >= 0 for p in md[name].partitions.values())
               for name in topics):
            return
        time.sleep(0.05)
    raise MissingTopicsError(f"created topics {sorted(topics)} have no leaders after {timeout}s")


def partition_counts(config: AppConfig, names: list[str]) -> dict[str, int]:
    admin = AdminClient({"bootstrap.servers": config.bootstrap_servers})
    md = admin.list_topics(timeout=30).topics
    return {n: len(md[n].partitions) for n in names if n in md}
