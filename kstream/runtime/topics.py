"""Start-up topic checks: inputs and outputs must exist (or be created when configured);
internal topics (dead-letter, changelogs, repartition) are created by kstream itself."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kstream.config import ERROR_DEAD_LETTER, AppConfig
from kstream.errors import AbortableError, KafkaUnreachableError, MissingTopicsError
from kstream.runtime.outage import OutageWaiter
from kstream.topology import SinkNode, SubTopology, Topology

log = logging.getLogger("kstream.topics")


def wait_for_cluster(config: AppConfig, outage: OutageWaiter) -> None:
    """Start-up only: some broker of bootstrap_servers answers a metadata request within
    startup_timeout_ms, or KafkaUnreachableError names the servers and the last error."""
    admin = AdminClient(_admin_config(config))

    def probe() -> None:
        admin.list_topics(timeout=2.0)

    try:
        outage.run(probe, "reach Kafka", deadline_s=config.startup_timeout_ms / 1000)
    except AbortableError as exc:
        raise KafkaUnreachableError(
            f"cannot reach Kafka at {config.bootstrap_servers} within "
            f"{config.startup_timeout_ms / 1000:.0f}s ({exc}); check bootstrap_servers "
            "(or KSTREAM_BOOTSTRAP_SERVERS) and that the brokers are up") from None


def _admin_config(config: AppConfig) -> dict[str, Any]:
    from kstream.runtime.client_logs import client_logger

    client = {k: v for k, v in config.consumer_config.items()
              if k.startswith(("security.", "sasl.", "ssl."))}
    return {"bootstrap.servers": config.bootstrap_servers, "logger": client_logger(), **client}


def ensure_topics(topology: Topology, config: AppConfig) -> dict[str, int]:
    """Check user topics, create internal ones; return the partition count of every topic.

    Internal topics get as many partitions as the inputs of the sub-topology that feeds them
    (repartition) or owns them (changelog); an existing one with another count is an error,
    as are co-partitioned inputs (inputs sharing a store) with different counts.
    """
    admin = AdminClient(_admin_config(config))
    existing = admin.list_topics(timeout=30).topics
    internal = topology.internal_topics
    user_topics = [t for t in dict.fromkeys(topology.source_topics + topology.sink_topics()
                                            + topology.global_topics)
                   if t not in internal]
    missing_user = [t for t in user_topics if t not in existing]
    if missing_user and not config.auto_create_topics:
        raise MissingTopicsError(
            f"topics do not exist: {', '.join(missing_user)}. Create them, or set "
            f"auto_create_topics=True (with topic_partitions=N) to let kstream create them.")
    if missing_user:
        create(admin, {t: (config.topic_partitions, {}) for t in missing_user})
    counts = {t: len(md.partitions) for t, md in existing.items()}
    counts.update({t: config.topic_partitions for t in missing_user})
    wanted = internal_partitions(topology, counts)
    to_create: dict[str, tuple[int, dict[str, str]]] = {}
    for name, partitions in wanted.items():
        if name not in existing:
            to_create[name] = (partitions, internal[name].config)
        elif counts[name] != partitions:
            raise MissingTopicsError(
                f"internal topic {name} has {counts[name]} partitions but its inputs have "
                f"{partitions}: the input topics changed size. Reset the application (delete "
                f"its internal topics and state directory) to rebuild it.")
    needs_dlq = config.error_policy == ERROR_DEAD_LETTER or topology.dlq_required
    if needs_dlq and config.dlq_topic not in existing:
        to_create[config.dlq_topic] = (1, {})
    if to_create:
        create(admin, to_create)
    counts.update({t: spec[0] for t, spec in to_create.items()})
    check_copartitioning(topology, counts)
    return counts


def internal_partitions(topology: Topology, counts: dict[str, int]) -> dict[str, int]:
    """The partition count of every internal topic.

    A repartition topic has its explicit size (`Stream.repartition(partitions=N)`), else the
    size of the inputs of the sub-topology writing it. When it is read by a sub-topology whose
    inputs must be co-partitioned (a join, a cogroup), it takes the size of that group instead,
    as Kafka Streams does: the largest fixed size (user topics, explicit sizes) or, if none,
    the largest of the group's repartition topics. Changelogs follow their store's task count.
    """
    subs = topology.subtopologies()
    internal = topology.internal_topics
    writer: dict[str, int] = {}
    for sub in subs:
        for name in sub.nodes:
            node = topology.nodes[name]
            if isinstance(node, SinkNode) and node.topic in internal:
                writer[node.topic] = sub.index
    reader = {topic: sub.index for sub in subs for topic in sub.source_topics}
    store_sub = {st: sub.index for sub in subs for st in sub.stores}
    resolved_subs: dict[int, int] = {}
    resolved_topics: dict[str, int] = {}

    def sub_partitions(index: int, seen: frozenset[str]) -> int:
        if index not in resolved_subs:
            sizes = [size for topic in subs[index].source_topics
                     if (size := topic_partitions(topic, seen)) is not None]
            resolved_subs[index] = max(sizes) if sizes else 1
        return resolved_subs[index]

    def natural(topic: str, seen: frozenset[str]) -> int:
        """A repartition topic's own size: explicit, else its writer's."""
        if topic in seen:
            raise MissingTopicsError("repartition topics form a cycle")
        explicit = internal[topic].partitions
        if explicit is not None:
            return explicit
        if topic not in writer:
            raise MissingTopicsError(f"nothing writes repartition topic {topic}")
        return sub_partitions(writer[topic], seen | {topic})

    def topic_partitions(topic: str, seen: frozenset[str]) -> int | None:
        if topic not in internal:
            return counts.get(topic)
        if topic not in resolved_topics:
            # The co-partitioning group first: a foreign-key join's two topics each feed the
            # other's writer, so their own (writer's) sizes would ask each other in a cycle.
            size: int | None = None
            sub = subs[reader[topic]] if topic in reader else None
            if (internal[topic].partitions is None and sub is not None
                    and must_copartition(sub)):
                fixed = [counts[t] for t in sub.source_topics if t not in internal and t in counts]
                fixed += [p for t in sub.source_topics if t in internal
                          and (p := internal[t].partitions) is not None]
                size = max(fixed) if fixed else max(
                    natural(t, seen) for t in sub.source_topics if t in internal)
            resolved_topics[topic] = natural(topic, seen) if size is None else size
        return resolved_topics[topic]

    result = {}
    for name, spec in internal.items():
        if spec.kind == "repartition":
            if name not in writer:
                raise MissingTopicsError(f"nothing writes repartition topic {name}")
            result[name] = topic_partitions(name, frozenset()) or 1
        else:
            store = next(b.name for b in topology.stores.values()
                         if b.changelog_topic(topology.application_id) == name)
            result[name] = (sub_partitions(store_sub[store], frozenset()) if store in store_sub
                            else 1)
    return result


def must_copartition(sub: SubTopology) -> bool:
    """Inputs sharing a store (joins, cogroups, merged aggregations) meet key by key."""
    return bool(sub.stores) and len(sub.source_topics) >= 2


def check_copartitioning(topology: Topology, counts: dict[str, int]) -> None:
    for sub in topology.subtopologies():
        if not must_copartition(sub):
            continue
        sizes = {t: counts.get(t) for t in sub.source_topics}
        if len(set(sizes.values())) > 1:
            want = max((n for n in sizes.values() if n is not None), default=1)
            smaller = [t for t, n in sizes.items() if n != want]
            raise MissingTopicsError(
                f"topics {sizes} are joined or share stores, so they must have the same number "
                f"of partitions (co-partitioning). Repartition the stream read from "
                f"{', '.join(smaller)} before the join: "
                f".repartition(name=\"...\", partitions={want})")


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
