"""Exactly-once hand-over: abort a departed member's open transaction instead of waiting.

Why: an instance killed mid-transaction leaves it open, and an open transaction holds the
last stable offset of every partition it wrote (outputs, changelogs, repartition topics):
read_committed readers, the new owner's restore and standbys see nothing past it until the
broker aborts it, `transaction.timeout.ms` after it began plus up to the broker's
`transaction.abort.timed.out.transaction.cleanup.interval.ms` (10 s by default). The new
owner's outputs land behind it and stay invisible just as long.

A survivor can end that at once: under static membership an instance's group.instance.id *is*
its transactional.id (kstream.runtime.identity), so the group's description names the
transactional.id of every member. At each assignment the engine describes the group and
remembers who owned what; when it is handed partitions whose previous owner is no longer a
member, it opens a short-lived producer with that owner's transactional.id and calls
init_transactions: the coordinator aborts the open transaction and bumps the epoch.

Safety:
* Only a member absent from the current generation is fenced, never one still in the group.
  A departed member that is in fact alive (a zombie whose session expired) must not commit
  anything any more, and KIP-447 already refuses its offsets; fencing its producer too is
  what the coordinator would do to it at the transaction timeout anyway.
* A departed instance that restarts initialises its own transactional.id again (every start
  does), which fences our short-lived producer, not the other way round. If our fence lands
  after its restart's init, its first transaction fails as fenced and the engine rejoins with
  new clients (one of its FENCINGS_PER_MINUTE).
* Everything here is bounded by a deadline and optional: when describing or fencing fails,
  the transaction timeout still ends the transaction; the failure is logged, not raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException

from kstream.hosts import group_snapshot
from kstream.runtime.clients import KafkaClients

log = logging.getLogger("kstream.handover")

Owners = dict[tuple[str, int], str]  # (topic, partition) -> owner's group.instance.id


def departed_owners(previous: Mapping[tuple[str, int], str], members: Iterable[str],
                    assigned: Iterable[tuple[str, int]], me: str) -> set[str]:
    """Previous owners of the `assigned` partitions that are not among `members` now."""
    present = set(members) | {me}
    return {owner for tp in assigned if (owner := previous.get(tp)) is not None
            and owner not in present}


class HandOver:
    """Remembers the group's owners from one assignment to the next and fences the departed.

    The engine calls `start` at the top of on_assign; describing the group and fencing
    (0.1-0.7 s, mostly the coordinator writing the abort markers) run in a thread alongside
    the restore, and the engine holds back only the partitions that moved in until `done`
    (partitions it kept were nobody else's, so no hand-over concerns them). Invariant: nothing
    here touches tasks, stores or the engine's clients; the thread only reads and writes this
    object, and `wait` joins it before the next one starts.
    """

    def __init__(self, group_id: str, instance_id: str, bootstrap_servers: str,
                 client_config: dict[str, Any], transaction_timeout_ms: int,
                 clients: KafkaClients, deadline_s: float) -> None:
        self.group_id = group_id
        self.instance_id = instance_id
        self._bootstrap = bootstrap_servers
        self._client_config = client_config
        self._transaction_timeout_ms = transaction_timeout_ms
        self._clients = clients
        self.deadline_s = deadline_s
        self._owners: Owners = {}
        self._thread: threading.Thread | None = None
        self._began = 0.0
        self.fenced = 0  # transactional.ids fenced, ever

    def start(self, assigned: Iterable[tuple[str, int]]) -> None:
        """Begin the hand-over of a new assignment in the background."""
        self.wait()
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self.on_assign, args=(list(assigned),),
                                        name="kstream-handover", daemon=True)
        self._thread.start()

    def done(self) -> bool:
        """The hand-over started last finished, or its deadline passed (never blocks)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and (
                time.monotonic() < self._began + self.deadline_s):
            return False
        self.wait()
        return True

    def wait(self) -> None:
        """Until the hand-over started last is done, or its deadline passed."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(max(0.0, self._began + self.deadline_s - time.monotonic()))
            if thread.is_alive():
                log.warning("event=fence_skipped reason=deadline detail=processing goes on; "
                            "the broker aborts the departed member's transaction on its own")

    def on_assign(self, assigned: Iterable[tuple[str, int]]) -> None:
        """Fence the departed previous owners of `assigned`; remember the new owners."""
        began = time.monotonic()
        assigned = list(assigned)
        current = self._describe(began + self.deadline_s)
        if current is None:
            return  # unknown membership: fence nobody, keep the old memory
        members, owners = current
        previous = self._owners
        # Ours, whatever the description says (it may lag this very assignment).
        self._owners = {**owners, **{tp: self.instance_id for tp in assigned}}
        for owner in sorted(departed_owners(previous, members, assigned, self.instance_id)):
            if not owner.startswith(f"{self.group_id}-"):
                continue  # not a kstream identity of this application: not ours to fence
            self._fence(owner, [tp for tp in assigned if previous.get(tp) == owner], began)

    def _describe(self, deadline: float) -> tuple[set[str], Owners] | None:
        """The current members' group.instance.ids and their partitions; None if unknown
        (no answer in time, or a dynamic member, whose transactional.id we cannot name)."""
        try:
            admin = self._clients.admin({"bootstrap.servers": self._bootstrap,
                                         **self._client_config})
            timeout = max(0.1, deadline - time.monotonic())
            future = admin.describe_consumer_groups(
                [self.group_id], request_timeout=timeout)[self.group_id]
            snapshot = group_snapshot(future.result(timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - optional: the transaction timeout remains
            log.warning("event=fence_skipped reason=describe_failed error=%s", exc)
            return None
        members: set[str] = set()
        owners: Owners = {}
        for instance in snapshot.instances:
            if instance.instance_id is None:
                return None
            members.add(instance.instance_id)
            for tp in instance.partitions:
                owners[tp] = instance.instance_id
        return members, owners

    def _fence(self, transactional_id: str, partitions: list[tuple[str, int]],
               began: float) -> None:
        left = self.deadline_s - (time.monotonic() - began)
        if left <= 0.1:
            log.warning("event=fence_skipped reason=deadline transactional_id=%s",
                        transactional_id)
            return
        producer = self._clients.producer({
            "bootstrap.servers": self._bootstrap, **self._client_config,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": self._transaction_timeout_ms,
            # The coordinator answers CONCURRENT_TRANSACTIONS until the abort is written:
            # ask again soon rather than after librdkafka's default 100 ms-1 s backoff.
            "retry.backoff.ms": 20, "retry.backoff.max.ms": 100})
        try:
            producer.init_transactions(left)
        except KafkaException as exc:
            log.warning("event=fence_failed transactional_id=%s error=%s", transactional_id,
                        exc)
            return
        finally:
            producer.purge()
        self.fenced += 1
        log.info("event=fence_departed transactional_id=%s partitions=%s seconds=%.2f",
                 transactional_id, ",".join(f"{t}[{p}]" for t, p in partitions) or "-",
                 time.monotonic() - began)
