"""Restore a savepoint into an application (the same one, changed code, or a fork).

Everything is checked before anything is written to Kafka (checksums, kstream major version,
stores by name and kind, partition counts, input topics, a group without live members, a
local state directory nobody holds), so a refused restore leaves Kafka as it was. A window or
session store whose segment interval changed (its retention did: a longer `retention=` or
grace) has its keys, and those of its emit="final" index, laid out for the new interval on
the way (the segment is part of the key). Then:

1. this host's state directory for the application is deleted (the normal restore rebuilds
   the stores from the changelogs; other hosts must delete theirs, as for `kstream reset`);
2. the application's existing internal topics (changelogs, repartition topics) are deleted
   and created again empty by `ensure_topics`: the savepoint replaces their state;
3. one transaction (one transactional producer) writes every store's entries to its
   changelog partition, the not-yet-consumed repartition records to the new repartition
   topics, and the group's offsets: `send_offsets_to_transaction` with the group metadata of
   a consumer using the target group id (a group with no members accepts it). Readers
   (read_committed) see all of it or none of it.

Then `kstream run` starts the app, which restores its stores from the changelogs as usual.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import kstream
from kstream.app import App
from kstream.hosts import describe_group
from kstream.reset import ResetRefused, _check_not_locked, _wait_deleted
from kstream.runtime.partitioner import partition_for_key
from kstream.runtime.topics import ensure_topics, internal_partitions
from kstream.savepoint.create import TIMEOUT_S, client_config
from kstream.savepoint.format import SavepointError, pending_file, read_records
from kstream.savepoint.manifest import major, store_kind
from kstream.savepoint.transform import (
    Savepoint,
    index_of,
    resegment_index_key,
    resegment_key,
)

log = logging.getLogger("kstream.savepoint")

TRANSACTION_TIMEOUT_MS = 600_000


@dataclass
class RestorePlan:
    """What a validated restore will write."""

    application_id: str
    stores: list[tuple[str, str, int]] = field(default_factory=list)  # store, changelog, parts
    not_restored: list[str] = field(default_factory=list)  # savepoint stores left out
    empty_stores: list[str] = field(default_factory=list)  # topology stores not in savepoint
    offsets: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    pending: list[tuple[str, int, str]] = field(default_factory=list)  # topic, partition, file
    delete_topics: list[str] = field(default_factory=list)
    # window/session stores (and their emit="final" index) whose segment interval changed:
    # store -> (saved segment_ms, new segment_ms); their keys are laid out anew
    resegment: dict[str, tuple[int, int]] = field(default_factory=dict)
    # repartition topics of another size than in the savepoint: topic -> partitions; their
    # unconsumed records are spread by key
    rehash: dict[str, int] = field(default_factory=dict)
    # input topics with more partitions than in the savepoint: topic -> (saved, now)
    grown_inputs: dict[str, tuple[int, int]] = field(default_factory=dict)


def restore_savepoint(savepoint: str | Path | Savepoint, app: App, *,
                      application_id: str | None = None,
                      allow_non_restored_state: bool = False,
                      say: Callable[[str], None] = log.info) -> RestorePlan:
    """`restore_savepoint(DIR, app, application_id=None, allow_non_restored_state=False)`:
    write the savepoint's state and offsets for `app` (under `application_id`, a fork, if
    given). SavepointError, with nothing written to Kafka, when anything does not fit."""
    sp = savepoint if isinstance(savepoint, Savepoint) else Savepoint.open(savepoint)
    if application_id:
        app = app.with_config(application_id=application_id)
    plan = plan_restore(sp, app, allow_non_restored_state)
    _execute(sp, app, plan, say)
    return plan


def plan_restore(sp: Savepoint, app: App, allow_non_restored_state: bool) -> RestorePlan:
    """Validate everything; writes nothing anywhere."""
    manifest = sp.manifest
    if major(manifest.kstream_version) != major(kstream.__version__):
        raise SavepointError(
            f"savepoint written by kstream {manifest.kstream_version}; this is kstream "
            f"{kstream.__version__}: a savepoint is restored by the same major version only "
            "(restore it with that version, or migrate it with its Python API)")
    cfg = app.config
    app_id = cfg.application_id
    topology = app.topology
    topology.bind(app_id)
    plan = RestorePlan(app_id)
    saved = {s.name: s for s in manifest.stores}
    logged = {n: b for n, b in topology.stores.items() if getattr(b, "logging", False)}
    problems = []
    for name in topology.stores:
        if name not in logged and name in saved:
            problems.append(f"store {name!r} is not logged in the new topology (no changelog "
                            "to restore into)")
    plan.not_restored = sorted(n for n in saved if n not in logged)
    plan.empty_stores = sorted(n for n in logged if n not in saved)
    if (plan.not_restored or plan.empty_stores) and not allow_non_restored_state:
        if plan.not_restored:
            problems.append(f"savepoint stores missing from the topology: "
                            f"{', '.join(plan.not_restored)}")
        if plan.empty_stores:
            problems.append(f"topology stores missing from the savepoint: "
                            f"{', '.join(plan.empty_stores)}")
        problems.append("(rename or drop stores with the savepoint writer, or pass "
                        "--allow-non-restored-state)")
    for name in sorted(set(saved) & set(logged)):
        kind = store_kind(logged[name])
        if kind != saved[name].kind:
            problems.append(f"store {name!r} is a {saved[name].kind} store in the savepoint "
                            f"but a {kind} store in the topology")
    if problems:
        raise SavepointError("the topology does not match the savepoint: " + "; ".join(problems))
    conf = client_config(app)
    admin = AdminClient(conf)
    group = describe_group(admin, app_id, TIMEOUT_S)
    if group.instances:
        members = ", ".join(f"{i.client_id} ({i.host})" for i in group.instances)
        raise SavepointError(f"consumer group {app_id} has {len(group.instances)} live "
                             f"member(s): {members}. Stop every instance first.")
    _not_locked(Path(cfg.state_dir) / app_id)
    metadata = admin.list_topics(timeout=TIMEOUT_S).topics
    counts = {t: len(md.partitions) for t, md in metadata.items()}
    internal = topology.internal_topics
    inputs = [t for t in topology.source_topics if t not in internal]
    missing = [t for t in inputs if t not in counts]
    if missing and not cfg.auto_create_topics:
        raise SavepointError(f"input topics do not exist: {', '.join(missing)}")
    for topic, n in manifest.input_partitions.items():
        # More partitions: the topic grew (Kafka only adds partitions); the saved offsets
        # still point at the same records, the new partitions are read from the start.
        if topic in inputs and topic in counts and counts[topic] < n:
            raise SavepointError(f"input topic {topic} has {counts[topic]} partitions; the "
                                 f"savepoint's offsets are for {n}")
        if topic in inputs and topic in counts and counts[topic] > n:
            plan.grown_inputs[topic] = (n, counts[topic])
    for t in missing:
        counts[t] = cfg.topic_partitions
    # Internal topics are recreated, so their size is what the inputs give them.
    sizes = internal_partitions(topology, {t: c for t, c in counts.items()
                                           if t not in internal})
    for name in sorted(set(saved) & set(logged)):
        topic = logged[name].changelog_topic(app_id)
        if sizes[topic] != saved[name].partitions:
            raise SavepointError(
                f"store {name!r} has {saved[name].partitions} partitions in the savepoint but "
                f"{sizes[topic]} in the application (its input topics' size): re-key it with "
                "SavepointWriter.repartition_store")
        plan.stores.append((name, topic, saved[name].partitions))
        before, after = saved[name].segment_ms, getattr(logged[name], "segment_ms", None)
        if saved[name].kind in ("window", "session") and before and after and before != after:
            plan.resegment[name] = (before, after)
    for name, _, _ in plan.stores:
        base = index_of(manifest, name)
        if base is not None and base in plan.resegment:
            plan.resegment[name] = plan.resegment[base]
    for o in manifest.offsets:
        if o.offset < 0:
            continue
        if o.topic in inputs:
            plan.offsets[(o.topic, o.partition)] = (o.offset, o.metadata)
    repartitions = {t[len(app_id) + 1:]: t for t, s in internal.items()
                    if s.kind == "repartition"}
    saved_meta = {(o.topic, o.partition): o for o in manifest.offsets}
    saved_sizes = Counter(p.suffix for p in manifest.pending)
    for p in manifest.pending:
        target = repartitions.get(p.suffix)
        if target is None:
            if p.records and not allow_non_restored_state:
                raise SavepointError(f"the savepoint holds {p.records} unconsumed records of "
                                     f"repartition topic <app>-{p.suffix}, which the topology "
                                     "lacks (or pass --allow-non-restored-state)")
            continue
        old = f"{manifest.application_id}-{p.suffix}"
        plan.pending.append((target, p.partition, pending_file(p.suffix, p.partition)))
        if sizes[target] != saved_sizes[p.suffix]:
            # Another size: each record goes where the producer would put it now (murmur2
            # of its key), to the task that owns its key's store partition.
            plan.rehash[target] = sizes[target]
            partitions = range(sizes[target])
        else:
            partitions = range(p.partition, p.partition + 1)
        for partition in partitions:
            meta = saved_meta.get((old, partition))
            plan.offsets[(target, partition)] = (0, meta.metadata if meta else "")
    plan.delete_topics = sorted(t for t in internal if t in metadata)
    return plan


def _not_locked(state_dir: Path) -> None:
    try:
        _check_not_locked(state_dir)
    except ResetRefused as exc:
        raise SavepointError(str(exc)) from None


def _key_mapper(sp: Savepoint, plan: RestorePlan, store: str) -> Callable[[bytes], bytes] | None:
    if store not in plan.resegment:
        return None
    segment_ms = plan.resegment[store][1]
    if index_of(sp.manifest, store) is not None:
        return lambda key: resegment_index_key(key, segment_ms)
    return lambda key: resegment_key(key, segment_ms)


def _execute(sp: Savepoint, app: App, plan: RestorePlan, say: Callable[[str], None]) -> None:
    cfg = app.config
    app_id = plan.application_id
    conf = client_config(app)
    admin = AdminClient(conf)
    state_dir = Path(cfg.state_dir) / app_id
    if state_dir.exists():
        _not_locked(state_dir)
        shutil.rmtree(state_dir)
        say(f"deleted state directory {state_dir}")
    if plan.delete_topics:
        for fut in admin.delete_topics(plan.delete_topics,
                                              operation_timeout=TIMEOUT_S).values():
            try:
                fut.result(timeout=TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].code() != exc.args[0].UNKNOWN_TOPIC_OR_PART:
                    raise
        _wait_deleted(admin, plan.delete_topics)
        say(f"deleted internal topics {', '.join(plan.delete_topics)}")
    ensure_topics(app.topology, cfg)
    began = time.monotonic()
    producer = Producer({**conf, "transactional.id": f"{app_id}-savepoint-restore",
                         "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                         "linger.ms": 20, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000,
                         "compression.type": "lz4"})
    consumer = Consumer({**conf, "group.id": app_id, "enable.auto.commit": False})
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    try:
        producer.init_transactions(TIMEOUT_S)
        producer.begin_transaction()
        produce = producer.produce
        records = 0
        for name, topic, partitions in plan.stores:
            remap = _key_mapper(sp, plan, name)
            if remap is not None:
                before, after = plan.resegment[name]
                say(f"store {name}: segment interval {before} ms -> {after} ms (retention "
                    "changed): keys laid out anew")
            for partition in range(partitions):
                for key, value, timestamp in sp.stamped_entries(name, partition):
                    if remap is not None:
                        key = remap(key)
                    # The saved record time (an aggregate's, KIP-258); 0 lets the producer
                    # stamp a format 1 entry, whose time is unknown.
                    stamp = max(timestamp, 0)
                    while True:
                        try:
                            produce(topic, value, key, partition, on_delivery=on_delivery,
                                    timestamp=stamp)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    records += 1
        for topic, (before, after) in plan.grown_inputs.items():
            say(f"input topic {topic}: {after} partitions, {before} in the savepoint; "
                f"partitions {before}..{after - 1} have no saved offsets (read from "
                f"auto_offset_reset={cfg.auto_offset_reset!r})")
        for target, saved_partition, file in plan.pending:
            size = plan.rehash.get(target)
            for timestamp, rkey, rvalue in read_records(sp.root / file):
                partition = saved_partition
                if size is not None:
                    partition = (partition_for_key(rkey, size) if rkey is not None
                                 else saved_partition % size)
                while True:
                    try:
                        produce(target, rvalue, rkey, partition, on_delivery=on_delivery,
                                timestamp=timestamp)
                        break
                    except BufferError:
                        producer.poll(0.05)
                records += 1
        producer.flush(TRANSACTION_TIMEOUT_MS / 1000)
        if errors:
            producer.abort_transaction(TIMEOUT_S)
            raise SavepointError(f"writing the changelogs failed: {errors[:3]}; the "
                                 "transaction was aborted")
        offsets = [TopicPartition(t, p, off, metadata=meta)
                   for (t, p), (off, meta) in sorted(plan.offsets.items())]
        if offsets:
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(),
                                                 TIMEOUT_S)
        producer.commit_transaction(TRANSACTION_TIMEOUT_MS / 1000)
    finally:
        consumer.close()
    seconds = time.monotonic() - began
    say(f"restored {records} records into {len(plan.stores)} stores and "
        f"{len(plan.offsets)} offsets for {app_id} in one transaction ({seconds:.2f}s)")
