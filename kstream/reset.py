"""`kstream reset`: start an application over, as Kafka Streams' application reset tool does.

What a reset does, in this order (and what `--dry-run` prints without doing it):

1. **Refuses while the application's consumer group has live members** (any instance still
   running anywhere), and while an instance on this host holds the state directory's lock.
2. **Deletes the consumer group**: every committed offset goes, with the stream time kept in
   the offsets' metadata and the offsets of repartition topics.
3. **Commits the new input offsets** for the group: the earliest offset of every input
   partition (`--to-earliest`, the default), or the first offset at or after a time
   (`--to-datetime`; a partition with no record that late gets its end offset).
4. **Deletes the internal topics**: every changelog and repartition topic, those of the
   topology and any other `<application_id>-…-changelog`/`-repartition` topic on the cluster
   (left by operators since renamed); it waits until the broker has removed them.
   The dead-letter topic `<application_id>-dlq` is kept: it holds records someone still has
   to look at, and its offsets are nobody's input. A rerun may add the same bad records again.
5. **Deletes this host's state directory** for the application (`<state_dir>/<application_id>`,
   stores and the instance id behind the transactional.id). Other hosts' state directories are
   theirs to delete: run the reset (or just delete the directory) on each; a stale local store
   would otherwise be found ahead of its (new, empty) changelog and refused at restore.

Output topics are left alone: a rerun appends to them.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from kstream.config import AppConfig
from kstream.errors import KStreamError
from kstream.hosts import describe_group
from kstream.topology import Topology

__all__ = ["ResetPlan", "ResetRefused", "parse_datetime", "plan_reset", "run_reset"]

T = TypeVar("T")

TIMEOUT_S = 30.0
# A group coordinator that is loading or moving (a broker just started or failed over) answers
# with these for a while; the call is retried until TIMEOUT_S, not reported as a failure.
_COORDINATOR_BUSY = (KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                     KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR)
TOPIC_DELETION_TIMEOUT_S = 60.0


class ResetRefused(KStreamError):
    """The application is running (somewhere in its group, or on this host)."""


@dataclass
class OffsetReset:
    topic: str
    partition: int
    current: int | None  # committed offset now, None: none committed
    target: int


@dataclass
class ResetPlan:
    application_id: str
    bootstrap_servers: str
    target: str  # "earliest" or the datetime, as given
    group_state: str
    offsets: list[OffsetReset] = field(default_factory=list)
    delete_topics: list[str] = field(default_factory=list)
    keep_topics: list[str] = field(default_factory=list)
    state_dir: Path | None = None  # exists and is to be deleted
    state_dir_missing: Path | None = None

    def describe(self, dry_run: bool) -> list[str]:
        will = "would" if dry_run else "will"
        lines = [f"reset application {self.application_id!r} on {self.bootstrap_servers}"
                 + (" (dry run: nothing is changed)" if dry_run else ""),
                 f"consumer group {self.application_id}: no live members "
                 f"(state {self.group_state.lower()}); {will} delete it",
                 f"input offsets {will} be set to {self.target}:"]
        for o in self.offsets:
            current = "none" if o.current is None else str(o.current)
            lines.append(f"  {o.topic}[{o.partition}]: {current} -> {o.target}")
        if not self.offsets:
            lines.append("  (no input partitions)")
        lines.append(f"internal topics {will} be deleted:")
        lines += [f"  {t}" for t in self.delete_topics] or ["  (none exist)"]
        for topic in self.keep_topics:
            lines.append(f"kept: dead-letter topic {topic} (records someone still has to look "
                         "at; a rerun may add the same bad records again)")
        if self.state_dir is not None:
            lines.append(f"state directory {will} be deleted: {self.state_dir}")
        elif self.state_dir_missing is not None:
            lines.append(f"state directory {self.state_dir_missing} does not exist on this "
                         "host: nothing to delete")
        return lines


def parse_datetime(text: str) -> int:
    """Milliseconds since the epoch from ISO 8601 (`2024-05-01T12:00:00+02:00`; without a
    zone: UTC; a trailing `Z` is UTC) or from an integer of epoch milliseconds."""
    stripped = text.strip()
    if re.fullmatch(r"-?\d+", stripped):
        return int(stripped)
    try:
        when = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"--to-datetime {text!r} is neither ISO 8601 (e.g. "
                         "2024-05-01T12:00:00Z) nor epoch milliseconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def plan_reset(topology: Topology, config: AppConfig, to_datetime: str | None = None,
               admin: AdminClient | None = None) -> ResetPlan:
    """What a reset would do; ResetRefused while the application runs."""
    app_id = config.application_id
    topology.bind(app_id)
    admin = admin or AdminClient(_client_config(config))
    group = describe_group(admin, app_id, TIMEOUT_S)
    if group.instances:
        members = ", ".join(f"{i.client_id} ({i.host})" for i in group.instances)
        raise ResetRefused(f"consumer group {app_id} has {len(group.instances)} live "
                           f"member(s): {members}. Stop every instance of the application "
                           "first (a SIGKILLed one, or a static member stopped without "
                           "leave_group_on_shutdown, leaves the group after "
                           "session_timeout_ms).")
    state_dir = Path(config.state_dir) / app_id
    _check_not_locked(state_dir)
    plan = ResetPlan(app_id, config.bootstrap_servers,
                     "earliest" if to_datetime is None else to_datetime, group.state)
    metadata = admin.list_topics(timeout=TIMEOUT_S).topics
    internal = topology.internal_topics
    inputs = [t for t in topology.source_topics if t not in internal]
    missing = [t for t in inputs if t not in metadata]
    if missing:
        raise KStreamError(f"input topics do not exist: {', '.join(missing)}")
    committed = _committed(admin, app_id)
    when = None if to_datetime is None else parse_datetime(to_datetime)
    targets = _targets(config, [(t, p) for t in inputs for p in sorted(metadata[t].partitions)],
                       when)
    plan.offsets = [OffsetReset(t, p, committed.get((t, p)), target)
                    for (t, p), target in targets.items()]
    pattern = re.compile(re.escape(app_id) + r"-.+-(changelog|repartition)")
    plan.delete_topics = sorted({t for t in internal if t in metadata}
                                | {t for t in metadata if pattern.fullmatch(t)})
    if config.dlq_topic in metadata:
        plan.keep_topics = [config.dlq_topic]
    if state_dir.exists():
        plan.state_dir = state_dir
    else:
        plan.state_dir_missing = state_dir
    return plan


def execute(plan: ResetPlan, config: AppConfig, admin: AdminClient | None = None,
            say: Callable[[str], None] = print) -> None:
    """Carry a plan out, saying each step as it is done."""
    admin = admin or AdminClient(_client_config(config))
    app_id = plan.application_id
    # The group may have come alive since the plan: deleting it fails then (non-empty).
    try:
        _while_coordinator_busy(lambda: admin.delete_consumer_groups(
            [app_id], request_timeout=TIMEOUT_S)[app_id].result(timeout=TIMEOUT_S))
        say(f"deleted consumer group {app_id} (all its committed offsets)")
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.GROUP_ID_NOT_FOUND:
            say(f"consumer group {app_id} had no committed offsets")
        elif err.code() == KafkaError.NON_EMPTY_GROUP:
            raise ResetRefused(f"consumer group {app_id} has live members again: stop every "
                               "instance first") from exc
        else:
            raise
    if plan.offsets:
        request = ConsumerGroupTopicPartitions(
            app_id, [TopicPartition(o.topic, o.partition, o.target) for o in plan.offsets])
        done = _while_coordinator_busy(lambda: admin.alter_consumer_group_offsets(
            [request], request_timeout=TIMEOUT_S)[app_id].result(timeout=TIMEOUT_S))
        failed = [tp for tp in done.topic_partitions if tp.error is not None]
        if failed:
            raise KStreamError(f"committing new offsets failed for {failed}")
        say(f"committed {len(plan.offsets)} input offsets ({plan.target})")
    if plan.delete_topics:
        for topic, fut in admin.delete_topics(plan.delete_topics,
                                              operation_timeout=TIMEOUT_S).items():
            try:
                fut.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
            say(f"deleted topic {topic}")
        _wait_deleted(admin, plan.delete_topics)
    if plan.state_dir is not None:
        _check_not_locked(plan.state_dir)
        shutil.rmtree(plan.state_dir)
        say(f"deleted state directory {plan.state_dir}")


def run_reset(topology: Topology, config: AppConfig, to_datetime: str | None = None,
              dry_run: bool = False, say: Callable[[str], None] = print) -> ResetPlan:
    """Plan, print, and (unless `dry_run`) execute a reset; ResetRefused while it runs."""
    admin = AdminClient(_client_config(config))
    plan = plan_reset(topology, config, to_datetime, admin)
    for line in plan.describe(dry_run):
        say(line)
    if dry_run:
        say("dry run: nothing changed")
        return plan
    execute(plan, config, admin, say)
    say("reset done: the next run starts from the new input offsets with empty state")
    return plan


def _client_config(config: AppConfig) -> dict[str, Any]:
    return {"bootstrap.servers": config.bootstrap_servers,
            **{k: v for k, v in config.consumer_config.items()
               if k.startswith(("security.", "sasl.", "ssl."))}}


def _while_coordinator_busy(call: Callable[[], T], deadline_s: float = TIMEOUT_S,
                            pause_s: float = 0.5) -> T:
    """`call()`, again while the group coordinator says it is loading or moving (bounded by
    `deadline_s`); any other error, or the last busy one, is raised."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            busy = exc.args and isinstance(exc.args[0], KafkaError) and \
                exc.args[0].code() in _COORDINATOR_BUSY
            if not busy or time.monotonic() + pause_s > deadline:
                raise
        time.sleep(pause_s)  # a retry pause, not synchronisation: the coordinator is loading


def _check_not_locked(state_dir: Path) -> None:
    """Refuse when a local instance holds the state directory (kstream.runtime.identity)."""
    lock = state_dir / ".lock"
    if not lock.exists():
        return
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResetRefused(f"state directory {state_dir} is locked by a running instance "
                               "on this host: stop it first") from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    request = ConsumerGroupTopicPartitions(group)
    try:
        listed = _while_coordinator_busy(lambda: admin.list_consumer_group_offsets(
            [request], request_timeout=TIMEOUT_S)[group].result(timeout=TIMEOUT_S))
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND:
            return {}
        raise
    return {(tp.topic, tp.partition): tp.offset for tp in listed.topic_partitions or ()
            if tp.offset >= 0}


def _targets(config: AppConfig, partitions: list[tuple[str, int]],
             when: int | None) -> dict[tuple[str, int], int]:
    """Earliest offsets, or the first offset at/after `when` (end offset if none)."""
    consumer = Consumer({**_client_config(config), "group.id": f"{config.application_id}",
                         "enable.auto.commit": False})
    try:
        out: dict[tuple[str, int], int] = {}
        found: dict[tuple[str, int], int] = {}
        if when is not None and partitions:
            asked = [TopicPartition(t, p, when) for t, p in partitions]
            for tp in consumer.offsets_for_times(asked, timeout=TIMEOUT_S):
                if tp.error is not None:
                    raise KStreamError(f"offsets_for_times {tp.topic}[{tp.partition}]: "
                                       f"{tp.error}")
                found[(tp.topic, tp.partition)] = tp.offset
        for topic, partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=TIMEOUT_S)
            if when is None:
                out[(topic, partition)] = low
            else:
                offset = found.get((topic, partition), -1)
                out[(topic, partition)] = offset if offset >= 0 else high
        return out
    finally:
        consumer.close()


def _wait_deleted(admin: AdminClient, topics: list[str]) -> None:
    deadline = time.monotonic() + TOPIC_DELETION_TIMEOUT_S
    while True:
        present = set(admin.list_topics(timeout=TIMEOUT_S).topics)
        left = [t for t in topics if t in present]
        if not left:
            return
        if time.monotonic() > deadline:
            raise KStreamError(f"topics still present {TOPIC_DELETION_TIMEOUT_S:.0f}s after "
                               f"deletion: {', '.join(left)}")
        time.sleep(0.2)
