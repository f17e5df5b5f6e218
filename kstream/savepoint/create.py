"""Create a savepoint of a running (or stopped) application without pausing it.

Why this is consistent under exactly-once: an EOS commit is one transaction holding the
changelog records of every store written in the interval, the records sent to repartition
topics and the consumed input offsets (kstream.runtime.commit). So "the group's committed
offsets" and "each changelog read read_committed up to its last stable offset (LSO)" describe
the same state exactly when they are read at one moment, with no transaction completing in
between. We cannot read both atomically, so we read

    O1 = committed offsets (require_stable: an offset of a transaction still being completed
         is not returned; the fetch waits until it is resolved)
    L1 = LSO of every changelog and repartition partition
    O2 = committed offsets again,  L2 = LSOs again

and retry until O1 == O2 and L1 == L2. A transaction whose records are below L1 was decided
before L1 was read; its offsets are then either in O1 already or (still being completed) make
the stable fetch of O2 wait and differ from O1. A transaction whose offsets are in O1 has its
changelog markers written at about the same time; if one is not yet written when L1 is read,
that partition's LSO still stands at the transaction's first record and moves when the marker
lands, so L2 differs unless the broker took longer than the whole O1..L2 read to write that one
marker. That residual window (markers of one transaction reaching different partitions more
than a round trip apart) is the limit of reading without pausing; `stop=True` removes it
(the savepoint of a stopped app has no transaction in flight).

Repartition topics need one more condition. A changelog partition has one writer (the task
that owns it; a new owner writes only after its restore has read past every open transaction of
the old one), but a repartition partition is written by every instance's upstream tasks, so
their transactions interleave: instance X's transaction opens at offset L, instance Y's
transaction writes records after L and commits, and its offsets are in O while the LSO stays at
L. Reading up to L would lose Y's records (their input counts as consumed); reading past L would
take X's records, whose input is not. A reader cannot tell the two apart (librdkafka does not
expose a record's producer), but it can see whether such a Y can exist: every transaction that
ended leaves a control record (a marker, an offset gap to a read_uncommitted reader) on each
partition it wrote. So after O and L agree, each repartition partition is read
read_uncommitted from its LSO to its high watermark: no gap there means every record from L on
belongs to a transaction still open (up to the residual window above: a marker written
later than the high watermark is read), and L is the exact cut; a gap means retry. A single
instance never leaves a gap there (its next transaction starts after its markers); several
busy instances writing one repartition partition may leave one at every moment: then `create`
gives up after `consistent_timeout_s` with an error naming the topic, and the savepoint is
taken with `stop=True` (nothing is lost either way).

Under at-least-once there are no transactions: the changelog may hold writes whose input
offsets were not committed yet (they would be processed again after a restore, so the state
counts them twice), never the other way round (offsets are committed after the changelog is
acknowledged). Such a savepoint is marked "at_least_once" in its manifest: state is at or
ahead of the offsets, not equal to them. Stop the app first for an exact one.

`stop=True` (`kstream savepoint create --stop`) takes the savepoint of a stopped application:
it waits until the consumer group has no live member (every instance finished its batch,
committed and left the group) and no transaction is open on a changelog or repartition
partition (an instance killed mid-transaction leaves one until the broker aborts it, after the
app's `transaction_timeout_ms`), reads, and before publishing the directory checks that the
group is still empty and its offsets unchanged. The state then equals the offsets exactly,
under at-least-once too (for instances that stopped cleanly), and busy multi-instance apps
with repartition topics need no quiet moment. `App.savepoint(DIR, stop=True)` first stops the
instance running in this process; the command line cannot reach the instances (kstream has no
control channel to running processes, and the query server has no authentication, so it gets
no endpoint that stops the app): `--stop` waits, naming the instances still running, while
their operator stops them (SIGTERM, scaling to zero).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

import kstream
from kstream.app import App
from kstream.errors import StoreNotAvailableError
from kstream.hosts import describe_group
from kstream.runtime.topics import internal_partitions
from kstream.savepoint.format import (
    SavepointError,
    archive,
    pending_file,
    store_file,
    write_checksums,
    write_kv,
    write_records,
)
from kstream.savepoint.manifest import (
    Manifest,
    OffsetEntry,
    PendingEntry,
    StoreEntry,
    fingerprint,
    serde_name,
    store_kind,
)

log = logging.getLogger("kstream.savepoint")

TIMEOUT_S = 30.0
CONSISTENT_READ_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 300.0
POLL_S = 0.2
SAY_EVERY_S = 10.0

TP = tuple[str, int]

CONSISTENCY_STOPPED = ("stopped: no live member and no open transaction while the snapshot was "
                       "read; store contents equal the committed offsets")
CONSISTENCY_EOS = "exactly_once: store contents equal the committed offsets"
CONSISTENCY_ALOS = "at_least_once: stores may be ahead of the committed offsets"


def client_config(app: App) -> dict[str, Any]:
    cfg = app.config
    return {"bootstrap.servers": cfg.bootstrap_servers,
            **{k: v for k, v in cfg.consumer_config.items()
               if k.startswith(("security.", "sasl.", "ssl."))}}


def create_savepoint(app: App, directory: str | Path, *, make_archive: bool = False,
                     stop: bool = False, stop_timeout_s: float = STOP_TIMEOUT_S,
                     timeout_s: float = 300.0,
                     consistent_timeout_s: float = CONSISTENT_READ_TIMEOUT_S,
                     say: Callable[[str], None] = log.info) -> Path:
    """`create_savepoint(app, DIR, make_archive=False, stop=False) -> Path`: write a savepoint
    of `app`'s group into the new directory DIR (and DIR.tar with `make_archive`).

    Without `stop` the group may be running (it is not paused; see the module docstring for
    why the copy is consistent and when no consistent moment can be found). With `stop` the
    savepoint is of the stopped group: it waits up to `stop_timeout_s` for every instance to
    have left the group and every transaction to be closed (it stops no process itself:
    `App.savepoint(DIR, stop=True)` stops the instance running in this process first).

    Returns the directory (or the archive). SavepointError, with no DIR written, when DIR
    exists, the group has no committed offsets, no consistent moment is found within
    `consistent_timeout_s`, a changelog cannot be read within `timeout_s`, or with `stop` the
    group does not become empty (or an instance rejoins while the snapshot is read).
    """
    root = Path(directory)
    if root.exists():
        raise SavepointError(f"{root} already exists: a savepoint goes into a new directory")
    topology, cfg = app.topology, app.config
    app_id = cfg.application_id
    topology.bind(app_id)
    conf = client_config(app)
    admin = AdminClient(conf)
    metadata = admin.list_topics(timeout=TIMEOUT_S).topics
    counts = {t: len(md.partitions) for t, md in metadata.items()}
    missing = [t for t in topology.source_topics
               if t not in topology.internal_topics and t not in counts]
    if missing:
        raise SavepointError(f"input topics do not exist: {', '.join(missing)}")
    sizes = internal_partitions(topology, counts)
    internal = topology.internal_topics
    inputs = [(t, p) for t in topology.source_topics
              for p in range(counts.get(t, sizes.get(t, 0)))]
    stores = [b for b in topology.stores.values() if getattr(b, "logging", False)]
    changelogs: dict[str, Any] = {b.changelog_topic(app_id): b for b in stores}
    repartitions = [t for t, spec in internal.items() if spec.kind == "repartition"]
    watched = [(t, p) for t in list(changelogs) + repartitions if t in counts
               for p in range(counts[t])]
    interleaved = [(t, p) for t, p in watched if t in repartitions]
    began = time.monotonic()
    if stop:
        _wait_group_empty(admin, app_id, began + stop_timeout_s, say)
        _wait_no_open_transactions(admin, watched, began + stop_timeout_s, say)
        say(f"{app_id} is stopped: no live member, no open transaction "
            f"({time.monotonic() - began:.2f}s)")
    consumer = Consumer({**conf, "group.id": app_id, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest"})
    scanner = Consumer({**conf, "group.id": app_id, "enable.auto.commit": False,
                        "isolation.level": "read_uncommitted", "enable.partition.eof": True,
                        "auto.offset.reset": "earliest"}) if interleaved else None
    try:
        offsets, ends = _consistent_positions(admin, consumer, scanner, inputs, watched,
                                              interleaved, consistent_timeout_s)
        if not any(o.offset >= 0 for o in offsets.values()):
            raise SavepointError(f"consumer group {app_id} has no committed offsets: the app "
                                 "never committed (nothing to save)")
        say(f"consistent positions of {app_id} after {time.monotonic() - began:.2f}s")
        tmp = root.with_name(f".{root.name}.{uuid.uuid4().hex[:8]}.partial")
        tmp.mkdir(parents=True)
        try:
            files: list[str] = []
            entries: list[StoreEntry] = []
            for topic, builder in changelogs.items():
                partitions = counts.get(topic, sizes.get(topic, 1))
                entry = StoreEntry(builder.name, store_kind(builder),
                                   serde_name(builder.key_serde), serde_name(builder.value_serde),
                                   partitions, topic,
                                   retention_ms=getattr(builder, "retention_ms", None),
                                   segment_ms=getattr(builder, "segment_ms", None))
                for partition in range(partitions):
                    end = ends.get((topic, partition), 0)
                    state = _read_changelog(consumer, topic, partition, end,
                                            began + timeout_s)
                    name = store_file(builder.name, partition)
                    entry.counts[partition] = write_kv(
                        tmp / name, sorted((k, v, ts) for k, (v, ts) in state.items()))
                    entry.changelog_end[partition] = end
                    files.append(name)
                entries.append(entry)
                say(f"store {builder.name}: {sum(entry.counts.values())} entries")
            pending: list[PendingEntry] = []
            for topic in repartitions:
                suffix = topic[len(app_id) + 1:]
                for partition in range(counts.get(topic, 0)):
                    start = max(offsets[(topic, partition)].offset, 0)
                    end = ends.get((topic, partition), 0)
                    records = _read_range(consumer, topic, partition, start, end,
                                          began + timeout_s)
                    name = pending_file(suffix, partition)
                    pending.append(PendingEntry(suffix, partition,
                                                write_records(tmp / name, records), start))
                    files.append(name)
            description, print_ = fingerprint(topology)
            consistency = (CONSISTENCY_STOPPED if stop else
                           CONSISTENCY_EOS if cfg.exactly_once else CONSISTENCY_ALOS)
            manifest = Manifest(
                application_id=app_id, kstream_version=kstream.__version__,
                created_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                topology_description=description, topology_fingerprint=print_,
                processing_guarantee=cfg.processing_guarantee,
                consistency=consistency,
                stores=entries,
                offsets=[o for o in offsets.values() if o.topic not in internal
                         or internal[o.topic].kind == "repartition"],
                pending=pending,
                input_partitions={t: counts[t] for t in topology.source_topics
                                  if t not in internal and t in counts})
            manifest.write(tmp)
            write_checksums(tmp, [*files, "manifest.json"])
            if stop:
                _check_still_stopped(admin, consumer, app_id, inputs, offsets)
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        consumer.close()
        if scanner is not None:
            scanner.close()
    total = sum(sum(e.counts.values()) for e in entries)
    say(f"savepoint {root}: {len(entries)} stores, {total} entries, "
        f"{len([o for o in offsets.values() if o.offset >= 0])} offsets, "
        f"{time.monotonic() - began:.2f}s")
    if make_archive:
        packed = archive(root)
        shutil.rmtree(root)
        return packed
    return root


def _wait_group_empty(admin: AdminClient, app_id: str, deadline: float,
                      say: Callable[[str], None]) -> None:
    """Until the consumer group has no member (a member killed without leaving stays until
    its session times out); SavepointError at `deadline`, naming the members."""
    said = 0.0
    while True:
        try:
            members = list(describe_group(admin, app_id, TIMEOUT_S).instances)
        except StoreNotAvailableError as exc:
            members, unknown = [], str(exc)
        else:
            unknown = ""
            if not members:
                return
        names = ", ".join(f"{m.client_id} ({m.host})" for m in members) or unknown
        now = time.monotonic()
        if now > deadline:
            raise SavepointError(f"--stop: consumer group {app_id} still has live members "
                                 f"({names}); stop every instance (SIGTERM) and try again. "
                                 "Nothing was written")
        if now - said >= SAY_EVERY_S:
            said = now
            say(f"--stop: waiting for {len(members)} live instance(s) of {app_id} to stop: "
                f"{names}. Stop each one (SIGTERM: it finishes its batch, commits and leaves "
                "the group)" if members else f"--stop: {unknown}")
        time.sleep(POLL_S)


def _wait_no_open_transactions(admin: AdminClient, watched: list[TP], deadline: float,
                               say: Callable[[str], None]) -> None:
    """Until every watched partition's last stable offset equals its high watermark (no
    transaction open on it): a killed instance's transaction is aborted by the broker once
    the transaction timeout passed."""
    said = 0.0
    while True:
        stable = _stable_ends(admin, watched)
        high = _stable_ends(admin, watched, IsolationLevel.READ_UNCOMMITTED)
        open_ = [f"{t}[{p}]" for t, p in watched if stable[(t, p)] < high[(t, p)]]
        if not open_:
            return
        now = time.monotonic()
        if now > deadline:
            raise SavepointError(f"--stop: a transaction is still open on {', '.join(open_)} "
                                 "although the group is empty; nothing was written")
        if now - said >= SAY_EVERY_S:
            said = now
            say(f"--stop: waiting for the open transaction on {', '.join(open_)} to end (an "
                "instance stopped mid-transaction: the broker aborts it after the app's "
                "transaction_timeout_ms)")
        time.sleep(POLL_S)


def _check_still_stopped(admin: AdminClient, consumer: Consumer, app_id: str,
                         inputs: list[TP], offsets: dict[TP, OffsetEntry]) -> None:
    try:
        members = describe_group(admin, app_id, TIMEOUT_S).instances
    except StoreNotAvailableError as exc:
        raise SavepointError(f"--stop: cannot check that {app_id} stayed stopped: {exc}; "
                             "nothing was written") from exc
    now = {(o.topic, o.partition): o for o in _committed(consumer, inputs)}
    if members or now != offsets:
        raise SavepointError(f"--stop: an instance of {app_id} started while the savepoint "
                             "was read; nothing was written (stop it and try again)")


def _consistent_positions(admin: AdminClient, consumer: Consumer, scanner: Consumer | None,
                          inputs: list[TP], watched: list[TP], interleaved: list[TP],
                          timeout_s: float) -> tuple[dict[TP, OffsetEntry], dict[TP, int]]:
    """(committed offsets, LSOs) read at one consistent moment: see the module docstring.
    `interleaved`: the partitions several instances write (repartition topics), checked for
    markers between their LSO and high watermark with the read_uncommitted `scanner`."""
    deadline = time.monotonic() + timeout_s
    attempts = 0
    mixed: TP | None = None
    while True:
        attempts += 1
        first = _committed(consumer, inputs)
        ends = _stable_ends(admin, watched)
        second = _committed(consumer, inputs)
        ends_again = _stable_ends(admin, watched)
        if first == second and ends == ends_again:
            mixed = _mixed_partition(admin, scanner, interleaved, ends,
                                     max(deadline, time.monotonic() + TIMEOUT_S))
            if mixed is None:
                log.info("event=savepoint_positions attempts=%d", attempts)
                return {(o.topic, o.partition): o for o in second}, ends
        if time.monotonic() > deadline:
            if mixed is not None:
                raise SavepointError(
                    f"no exact cut of {mixed[0]}[{mixed[1]}] found in {timeout_s:.0f}s "
                    f"({attempts} attempts): transactions of several instances interleave "
                    "on it at every moment (one open, another committed after it began), and "
                    "a reader cannot tell their records apart. Take the savepoint with --stop "
                    "(App.savepoint(DIR, stop=True)) or while the input pauses. Nothing was "
                    "written")
            raise SavepointError(
                f"no consistent moment found in {timeout_s:.0f}s "
                f"({attempts} attempts): commits never paused between two reads; stop the app "
                "and take the savepoint then (--stop)")
        if mixed is not None:
            time.sleep(POLL_S / 4)  # the next commits will move the cut


def _mixed_partition(admin: AdminClient, scanner: Consumer | None, partitions: list[TP],
                     ends: dict[TP, int], deadline: float) -> TP | None:
    """The first of `partitions` with a transaction marker between its LSO (`ends`) and its
    high watermark, None when there is none (the LSO is then the exact cut)."""
    if scanner is None or not partitions:
        return None
    high = _stable_ends(admin, partitions, IsolationLevel.READ_UNCOMMITTED)
    for tp in partitions:
        start, end = ends[tp], high[tp]
        if start >= end:
            continue
        seen = sum(1 for _ in _messages(scanner, tp[0], tp[1], start, end, deadline))
        if seen != end - start:
            return tp
    return None


def _committed(consumer: Consumer, partitions: list[TP]) -> list[OffsetEntry]:
    if not partitions:
        return []
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            tps = consumer.committed([TopicPartition(t, p) for t, p in partitions],
                                     timeout=TIMEOUT_S)
            break
        except KafkaException as exc:
            if not exc.args[0].retriable() or time.monotonic() > deadline:
                raise SavepointError(f"cannot read committed offsets: {exc}") from exc
            time.sleep(0.1)
    return [OffsetEntry(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -1,
                        getattr(tp, "metadata", None) or "") for tp in tps]


def _stable_ends(admin: AdminClient, partitions: list[TP],
                 isolation: IsolationLevel = IsolationLevel.READ_COMMITTED) -> dict[TP, int]:
    """Last stable offset of each partition (read_committed ListOffsets) in one request; with
    READ_UNCOMMITTED the high watermark."""
    if not partitions:
        return {}
    request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
    futures = admin.list_offsets(request, isolation_level=isolation,
                                 request_timeout=TIMEOUT_S)
    out = {}
    for tp, future in futures.items():
        try:
            out[(tp.topic, tp.partition)] = future.result(timeout=TIMEOUT_S).offset
        except KafkaException as exc:
            raise SavepointError(f"cannot read the end of {tp.topic}[{tp.partition}]: "
                                 f"{exc}") from exc
    return out


def _read_range(consumer: Consumer, topic: str, partition: int, start: int, end: int,
                deadline: float) -> list[tuple[int, bytes | None, bytes | None]]:
    """(timestamp, key, value) of the committed records with start <= offset < end."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    for msg in _messages(consumer, topic, partition, start, end, deadline):
        out.append((msg.timestamp()[1], msg.key(), msg.value()))
    return out


def _read_changelog(consumer: Consumer, topic: str, partition: int, end: int,
                    deadline: float) -> dict[bytes, tuple[bytes, int]]:
    """A changelog partition's live entries below `end`: latest (value, record timestamp) per
    key, tombstones removing. The timestamp is an aggregate's (KIP-258): a restore writes it
    back."""
    state: dict[bytes, tuple[bytes, int]] = {}
    for msg in _messages(consumer, topic, partition, OFFSET_BEGINNING, end, deadline):
        key, value = msg.key(), msg.value()
        if key is None:
            continue
        if value is None:
            state.pop(key, None)
        else:
            state[key] = (value, msg.timestamp()[1])
    return state


def _messages(consumer: Consumer, topic: str, partition: int, start: int, end: int,
              deadline: float) -> Any:
    """Messages of one partition with offset < end, from `start`; bounded by `deadline`. A
    read_committed consumer skips aborted ones and markers, a read_uncommitted one only
    markers."""
    if end <= 0 or (start >= 0 and start >= end):
        return
    tp = TopicPartition(topic, partition, start)
    consumer.assign([tp])
    try:
        while True:
            if time.monotonic() > deadline:
                raise SavepointError(f"reading {topic}[{partition}] up to offset {end} did "
                                     "not finish in time")
            batch = consumer.consume(10_000, POLL_S)
            done = False
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done = True
                        continue
                    raise SavepointError(f"reading {topic}[{partition}]: {err}")
                offset = msg.offset()
                if offset is None or offset >= end:
                    done = True
                    break
                yield msg
            if done or _position(consumer, topic, partition) >= end:
                return
    finally:
        consumer.unassign()


def _position(consumer: Consumer, topic: str, partition: int) -> int:
    (tp,) = consumer.position([TopicPartition(topic, partition)])
    return int(tp.offset)
