"""Where each key lives: every instance advertises its query endpoint in its consumer's
`client.id`, and the consumer group's description says which member owns which partitions.

Why the group description (AdminClient.describe_consumer_groups) with the endpoint in the
client id, and not a compacted `<application_id>-metadata` topic:

* librdkafka cannot carry custom assignor userdata, so the assignment itself cannot carry an
  endpoint as Kafka Streams' does; but the coordinator already keeps, per member, its client id
  and its assignment, and one DescribeGroups request returns both.
* Every instance asks the same coordinator about the same generation, so all of them compute
  the same owner for a key.
* It is never staler than the group: a member that leaves, or is expelled after a SIGKILL,
  disappears together with its assignment. A metadata topic would keep a killed instance's
  record until someone tombstones it, and would still have to be joined with the assignment.
* Nothing to create, produce or consume; the cost is one request per lookup (cached for
  `CACHE_S` and dropped whenever this instance's own assignment changes) and the endpoint's
  length in the client id.

The client id is `<client id>@<host>:<port>` (the client id defaults to the application id).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from kstream.errors import StoreNotAvailableError

ENDPOINT_SEPARATOR = "@"
CACHE_S = 1.0
DESCRIBE_TIMEOUT_S = 5.0

__all__ = ["GroupMembership", "InstanceMetadata", "KeyMetadata", "advertised_client_id",
           "endpoint_of"]


def advertised_client_id(client_id: str, server: str) -> str:
    """The consumer's client.id carrying this instance's query endpoint."""
    return f"{client_id}{ENDPOINT_SEPARATOR}{server}"


def endpoint_of(client_id: str) -> str | None:
    """The "host:port" a member advertises in its client id, None if it advertises none."""
    _, sep, server = client_id.rpartition(ENDPOINT_SEPARATOR)
    host, colon, port = server.rpartition(":")
    if not sep or not colon or not host or not port.isdigit():
        return None
    return server


@dataclass(frozen=True)
class InstanceMetadata:
    """One live member of the application's consumer group."""

    endpoint: str | None  # None: it advertises no query endpoint
    client_id: str
    member_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]  # (topic, partition) assigned to it
    instance_id: str | None = None  # its group.instance.id; None: a dynamic member

    def to_json(self) -> dict[str, Any]:
        """As the query server's `GET /metadata` answers it (JSON-ready dict)."""
        return {"endpoint": self.endpoint, "client_id": self.client_id,
                "member_id": self.member_id, "host": self.host,
                "partitions": [{"topic": t, "partition": p} for t, p in self.partitions]}


@dataclass(frozen=True)
class KeyMetadata:
    """Where a key of a store lives: the owning instance's endpoint and the partition."""

    store: str
    partition: int
    endpoint: str | None
    topic: str  # the input topic whose partition `partition` the owner is assigned

    def to_json(self) -> dict[str, Any]:
        """As the query server's `GET /metadata?store=&key=` answers it (JSON-ready dict)."""
        return {"store": self.store, "partition": self.partition, "endpoint": self.endpoint,
                "topic": self.topic}


@dataclass(frozen=True)
class GroupSnapshot:
    state: str  # the coordinator's group state, e.g. "STABLE"
    instances: tuple[InstanceMetadata, ...]
    taken_at: float

    @property
    def stable(self) -> bool:
        return self.state == ConsumerGroupState.STABLE.name

    def owner(self, topic: str, partition: int) -> InstanceMetadata | None:
        for instance in self.instances:
            if (topic, partition) in instance.partitions:
                return instance
        return None


class GroupMembership:
    """The application's consumer group as the coordinator describes it; thread-safe."""

    def __init__(self, group_id: str, admin_config: dict[str, Any]) -> None:
        self.group_id = group_id
        self._admin_config = admin_config
        self._admin: AdminClient | None = None
        self._lock = threading.Lock()
        self._cached: GroupSnapshot | None = None
        self._cached_epoch = -1

    def describe(self, epoch: int = 0) -> GroupSnapshot:
        """The group now (cached for CACHE_S, and per `epoch` of the caller's assignment)."""
        with self._lock:
            cached = self._cached
            if (cached is not None and self._cached_epoch == epoch
                    and time.monotonic() - cached.taken_at < CACHE_S):
                return cached
            if self._admin is None:
                self._admin = AdminClient(self._admin_config)
            admin = self._admin
        snapshot = describe_group(admin, self.group_id)
        with self._lock:
            self._cached, self._cached_epoch = snapshot, epoch
        return snapshot

    def owner(self, topics: list[str], partition: int, epoch: int = 0
              ) -> tuple[str, InstanceMetadata]:
        """(topic, member) owning `partition` of any of `topics` (a sub-topology's inputs,
        which range assignment keeps together); StoreNotAvailableError while the group
        rebalances or nobody owns it."""
        snapshot = self.describe(epoch)
        if not snapshot.stable:
            raise StoreNotAvailableError(
                f"consumer group {self.group_id} is {snapshot.state.lower()}; retry",
                reason="rebalancing")
        for topic in topics:
            owner = snapshot.owner(topic, partition)
            if owner is not None:
                return topic, owner
        raise StoreNotAvailableError(f"no live member of {self.group_id} owns partition "
                                     f"{partition} of {', '.join(topics)}; retry",
                                     reason="unassigned")


def describe_group(admin: AdminClient, group_id: str,
                   timeout_s: float = DESCRIBE_TIMEOUT_S) -> GroupSnapshot:
    """One DescribeGroups round trip; StoreNotAvailableError when Kafka does not answer."""
    try:
        future = admin.describe_consumer_groups([group_id], request_timeout=timeout_s)[group_id]
        description = future.result(timeout=timeout_s + 1)
    except (KafkaException, TimeoutError, Exception) as exc:  # noqa: BLE001 - all mean retry
        raise StoreNotAvailableError(f"cannot describe consumer group {group_id}: {exc}; "
                                     "retry", reason="metadata_unavailable") from exc
    return group_snapshot(description)


def group_snapshot(description: Any) -> GroupSnapshot:
    """A DescribeGroups answer (confluent-kafka's ConsumerGroupDescription) as a snapshot:
    what queries, the exactly-once hand-over and standby placement read of the group."""
    instances = []
    for member in description.members or ():
        assignment = member.assignment
        tps = tuple(sorted((tp.topic, tp.partition)
                           for tp in (assignment.topic_partitions if assignment else ())))
        instances.append(InstanceMetadata(endpoint_of(member.client_id or ""),
                                          member.client_id or "", member.member_id or "",
                                          member.host or "", tps,
                                          member.group_instance_id or None))
    state = description.state.name if description.state is not None else "UNKNOWN"
    return GroupSnapshot(state, tuple(sorted(instances, key=lambda i: i.client_id)),
                         time.monotonic())
