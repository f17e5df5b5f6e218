"""Standby replicas: warm copies of other instances' stores, kept from their changelogs.

Placement comes from the consumer group's description (AdminClient.describe_consumer_groups:
every member's group.instance.id, or member id, and its assignment), not from a metadata
topic. Why:

* librdkafka carries no custom assignor userdata, so the assignment cannot say where standbys
  go, as Kafka Streams' does; but every instance can read the same description of the same
  generation, and a pure function of it (`place_standbys`) gives every instance the same
  answer. A metadata topic would need a writer, would outlive killed members and would still
  have to be joined with the assignment.
* The useful place for a standby is where the task will go when its owner dies. The engine's
  assignor is librdkafka's `range`, which orders members by group.instance.id (static
  members) or member id; so the first standby of a task goes to the member that range would
  give the task to if its owner left, the second to the one after that, and so on. A single
  failure then moves every task of the dead instance onto a warm standby.

A standby task's stores live where the active task's would, `<state_dir>/<app>/<task>/`, with
the same changelog checkpoint, so when the task is assigned here the ordinary restore reads
only the lag. Invariant: a store directory is open either as a standby or as an active task,
never both (the engine releases standbys before it creates tasks, and never places a standby
for a task active or suspended here). Only persistent (RocksDB), logged stores have standbys:
a memory store would have to hand its data to the task, and is rebuilt on every start anyway.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from kstream.hosts import group_snapshot
from kstream.runtime.clients import KafkaClients
from kstream.state.errors import StateCorruptedError, StateRestoreError
from kstream.state.restore import _apply_batch, _config, _Target
from kstream.topology import SubTopology, Topology

log = logging.getLogger("kstream.standby")

TaskId = tuple[int, int]  # (sub-topology index, partition)
REFRESH_S = 2.0
UNSTABLE_RETRY_S = 0.5
DESCRIBE_TIMEOUT_S = 5.0
APPLY_RECORDS = 5000  # per engine loop iteration: processing is never starved


@dataclass(frozen=True)
class Member:
    """One group member as placement sees it: its sort key in librdkafka's range assignor
    (group.instance.id, or member id for a dynamic member) and its assigned partitions."""

    key: str
    partitions: frozenset[tuple[str, int]]


def range_owner(partition: int, partitions: int, members: Sequence[str]) -> str | None:
    """Who librdkafka's range assignor gives `partition` of a `partitions`-partition topic,
    among `members` (sorted as the assignor sorts them)."""
    if not members:
        return None
    per, extra = divmod(partitions, len(members))
    for i, member in enumerate(members):
        start = i * per + min(i, extra)
        if start <= partition < start + per + (1 if i < extra else 0):
            return member
    return None


def place_standbys(members: Iterable[Member], subs: dict[int, list[str]],
                   partition_counts: dict[str, int], replicas: int) -> dict[str, set[TaskId]]:
    """For each member key, the tasks it keeps standbys of: for every task of `subs` (stateful
    sub-topology index -> its source topics), the members range would hand it to if its owner
    left, then if that one left too, and so on, `replicas` of them."""
    members = list(members)
    keys = sorted(m.key for m in members)
    placed: dict[str, set[TaskId]] = {k: set() for k in keys}
    for sub, topics in subs.items():
        count = min((partition_counts.get(t, 0) for t in topics), default=0)
        for partition in range(count):
            owner = next((m.key for m in members
                          if any((t, partition) in m.partitions for t in topics)), None)
            if owner is None:
                continue  # unassigned (mid-rebalance): no standby until it has an owner
            gone = {owner}
            for _ in range(replicas):
                nxt = range_owner(partition, count, [k for k in keys if k not in gone])
                if nxt is None:
                    break
                placed[nxt].add((sub, partition))
                gone.add(nxt)
    return placed


class StandbyReplicas:
    """The standby stores of one instance, their changelog consumer and their placement.

    Runs inside the engine loop (`poll` between batches): single-threaded like the rest, so no
    lock guards the stores; each call does a bounded amount of work.
    """

    def __init__(self, application_id: str, topology: Topology, subtopologies: list[SubTopology],
                 state_root: Path, bootstrap_servers: str, client_config: dict[str, Any],
                 replicas: int, clients: KafkaClients,
                 partition_counts: Callable[[], dict[str, int]]) -> None:
        self.application_id = application_id
        self.topology = topology
        self.replicas = replicas
        self.state_root = state_root
        self._clients = clients
        self._partition_counts = partition_counts
        self._subs = {s.index: list(s.source_topics) for s in subtopologies
                      if any(self._standby_worthy(n) for n in s.stores)}
        self._sub_stores = {s.index: [n for n in s.stores if self._standby_worthy(n)]
                            for s in subtopologies}
        self._bootstrap = bootstrap_servers
        self._client_config = client_config
        self._future: Any = None
        self._next_refresh = 0.0
        self._consumer: Any = None
        self.tasks: dict[TaskId, list[Any]] = {}  # standby task -> its stores
        self._targets: dict[tuple[str, int], _Target] = {}
        self.records = 0  # changelog records applied to standbys, ever

    @property
    def enabled(self) -> bool:
        return self.replicas > 0 and bool(self._subs)

    def _standby_worthy(self, store_name: str) -> bool:
        builder = self.topology.stores[store_name]
        return bool(getattr(builder, "logging", False)) and builder.backend == "rocksdb"

    # -- placement -----------------------------------------------------------------------------
    def refresh_soon(self) -> None:
        """The assignment changed: look at the group again at the next loop iteration."""
        self._next_refresh = 0.0

    def maybe_refresh(self, my_key: str | None, active: set[TaskId]) -> None:
        """Non-blocking: send a DescribeGroups every REFRESH_S, apply its answer once it is
        there and the group is stable (a group mid-rebalance says nothing useful)."""
        if not self.enabled or my_key is None:
            return
        now = time.monotonic()
        if self._future is None:
            if now < self._next_refresh:
                return
            self._next_refresh = now + REFRESH_S
            admin = self._clients.admin({"bootstrap.servers": self._bootstrap,
                                         **self._client_config})
            self._future = admin.describe_consumer_groups(
                [self.application_id], request_timeout=DESCRIBE_TIMEOUT_S)[self.application_id]
            return
        if not self._future.done():
            return
        future, self._future = self._future, None
        try:
            snapshot = group_snapshot(future.result())
        except Exception as exc:  # noqa: BLE001 - any failure: keep the standbys, ask again
            log.debug("describe group failed: %s", exc)
            return
        if not snapshot.stable:
            self._next_refresh = now + UNSTABLE_RETRY_S  # ask again soon, not every loop
            return
        members = [Member(i.instance_id or i.member_id, frozenset(i.partitions))
                   for i in snapshot.instances]
        placed = place_standbys(members, self._subs, self._partition_counts(), self.replicas)
        self.update(placed.get(my_key, set()) - active)

    def update(self, wanted: set[TaskId]) -> None:
        """Keep standbys of exactly `wanted`: close the others, open the new ones."""
        if wanted == set(self.tasks):
            return
        self.release(set(self.tasks) - wanted)
        for task_id in sorted(wanted - set(self.tasks)):
            self._open(task_id)
        self._reassign()
        log.info("event=standbys tasks=%s", ",".join(f"{s}_{p}" for s, p in sorted(self.tasks))
                 or "-")

    def release(self, task_ids: Iterable[TaskId]) -> None:
        """Close these standbys (their tasks become active here, or moved elsewhere); their
        stores stay on disk with their checkpoint, for the task's restore to continue from."""
        closing = [t for t in task_ids if t in self.tasks]
        if not closing:
            return
        for task_id in closing:
            for store in self.tasks.pop(task_id):
                self._targets.pop((store.changelog_topic, store.partition), None)
                store.close()
        self._reassign()

    def _open(self, task_id: TaskId) -> None:
        sub, partition = task_id
        stores = []
        for name in self._sub_stores.get(sub, []):
            builder = self.topology.stores[name]
            stores.append(builder.build(self.state_root / f"{sub}_{partition}", partition,
                                        builder.changelog_topic(self.application_id)))
        self.tasks[task_id] = stores
        for store in stores:
            offset = store.backend.committed_offset
            start = OFFSET_BEGINNING if offset is None else offset + 1
            self._targets[(store.changelog_topic, store.partition)] = _Target(store, start, start)

    def _reassign(self) -> None:
        if not self._targets:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            return
        if self._consumer is None:
            self._consumer = self._clients.consumer({
                **_config(self._bootstrap, self._client_config), "enable.partition.eof": False,
                "fetch.wait.max.ms": 500})  # a standby waits at the end: no busy fetching
        positions = []
        for key, target in self._targets.items():
            offset = target.store.backend.committed_offset
            positions.append(TopicPartition(*key, OFFSET_BEGINNING if offset is None
                                            else offset + 1))
        self._consumer.assign(positions)

    # -- keeping up ----------------------------------------------------------------------------
    def poll(self, max_records: int = APPLY_RECORDS) -> int:
        """Apply what the changelog consumer has fetched (never waits); records applied."""
        if self._consumer is None:
            return 0
        targets = self._targets
        # Records of a partition released a moment ago may still be queued: not ours now.
        msgs = [m for m in self._consumer.consume(max_records, 0)
                if (m.topic(), m.partition()) in targets]
        if not msgs:
            return 0
        try:
            applied = _apply_batch(msgs, targets, {})
        except StateCorruptedError as exc:  # the changelog no longer fits a standby's state
            log.warning("event=standby_reset error=%s", exc)
            self._reset_all_broken(msgs)
            return 0
        except StateRestoreError as exc:  # a fatal Kafka error: standbys are optional
            log.warning("event=standbys_dropped error=%s", exc)
            self.close()
            return 0
        self.records += applied
        return applied

    def _reset_all_broken(self, msgs: list[Any]) -> None:
        """A truncated or recreated changelog: wipe the affected standbys, start them over."""
        broken = {(m.topic(), m.partition()) for m in msgs
                  if m.error() is not None and m.error().code() in (
                      KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)}
        for task_id, stores in list(self.tasks.items()):
            if any((s.changelog_topic, s.partition) in broken for s in stores):
                self.release([task_id])
                shutil.rmtree(self.state_root / f"{task_id[0]}_{task_id[1]}",
                              ignore_errors=True)
                self._open(task_id)
        self._reassign()

    def lag(self) -> dict[tuple[str, int], int]:
        """(store, partition) -> changelog offsets the standby is behind: the high watermark
        of its last fetch minus its position (which steps over transaction markers, so a
        caught-up standby says 0). Local figures only: no request to Kafka."""
        out: dict[tuple[str, int], int] = {}
        if self._consumer is None:
            return out
        tps = [TopicPartition(t, p) for t, p in self._targets]
        try:
            positions = {(tp.topic, tp.partition): tp.offset
                         for tp in self._consumer.position(tps)}
        except Exception:  # noqa: BLE001 - unknown for now; say nothing
            return out
        for (topic, partition), target in self._targets.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True)
            except Exception:  # noqa: BLE001 - not fetched yet: unknown, say nothing
                continue
            offset = target.store.backend.committed_offset
            position = positions.get((topic, partition), -1)
            if position < 0:  # nothing fetched yet: where the standby will start
                position = 0 if offset is None else offset + 1
            if high is None or high < 0:
                continue
            out[(target.store.name, partition)] = max(0, high - position)
        return out

    def close(self) -> None:
        self.release(list(self.tasks))
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
