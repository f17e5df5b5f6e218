"""Savepoint of windowed emit="final" state (issue 17): no window's final result is lost or
emitted twice across a savepoint and its restore, into a fork (with another retention, so the
window keys are laid out for another segment interval) and into the same application."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sp_apps import windowed_final

from kstream.savepoint import Savepoint, SavepointError, restore_savepoint
from kstream.savepoint.create import CONSISTENCY_STOPPED
from kstream.testing import KafkaCluster, running_app, wait_until
from kstream.testing._fake_clients import partition_for_key

PARTITIONS = 3
SIZE = 10_000  # tumbling window
GAP = 3_000  # session inactivity gap
T0 = 1_700_000_000_000
STEP = 25
KEYS = [f"k{i}" for i in range(24)]
HOME = {k: partition_for_key(k.encode(), PARTITIONS) for k in KEYS}  # where the producer puts it

Event = tuple[str, str, int]  # key, value, timestamp


def events(first: int, count: int, seed: int) -> list[Event]:
    """Timestamps rise by STEP; most records are up to 4 s early (some of them too late for
    their window: dropped, by the model too); value "s" records are on time (sessions)."""
    rng = random.Random(seed)
    out = []
    for i in range(first, first + count):
        base = T0 + i * STEP
        if rng.random() < 0.12:
            out.append((rng.choice(KEYS), "s", base))
        else:
            out.append((rng.choice(KEYS), "t", base - rng.randrange(4_000)))
    return out


def sentinels() -> list[Event]:
    """One far-future record per partition: stream time passes every window's close. Value
    "s": the session aggregation sees only those, and closes sessions only when one arrives."""
    last = {}
    for key in KEYS:
        last.setdefault(HOME[key], key)
    return [(key, "s", T0 + 10**8) for key in last.values()]


def model(evts: list[Event]) -> dict[str, int]:
    """The final results of windowed_final over `evts` in produce order, per partition."""
    per_partition: dict[int, list[Event]] = {}
    for e in evts:
        per_partition.setdefault(HOME[e[0]], []).append(e)
    out: dict[str, int] = {}
    for part in per_partition.values():
        stream_time = -1
        windows: Counter[tuple[str, int]] = Counter()
        sessions: dict[str, list[list[int]]] = {}
        for key, value, ts in part:
            stream_time = max(stream_time, ts)
            start = ts - ts % SIZE
            if start + SIZE > stream_time:  # else late: the window has closed (grace 0)
                windows[(key, start)] += 1
            if value == "s":  # on time by construction: sessions in order
                runs = sessions.setdefault(key, [])
                if runs and ts - runs[-1][1] <= GAP:
                    runs[-1][1] = ts
                    runs[-1][2] += 1
                else:
                    runs.append([ts, ts, 1])
        for (key, start), n in windows.items():
            if start + SIZE <= stream_time:
                out[f"T|{key}@{start}"] = n
        for key, runs in sessions.items():
            for s, e, n in runs:
                if e + GAP + 1 <= stream_time:
                    out[f"S|{key}@{s}-{e}"] = n
    return out


def produce(kafka: KafkaCluster, topic: str, evts: list[Event]) -> None:
    for p in range(PARTITIONS):
        kafka.produce(topic, ((k.encode(), v.encode(), ts) for k, v, ts in evts if HOME[k] == p),
                      partition=p)


def results(kafka: KafkaCluster, topic: str) -> list[tuple[str, int]]:
    return [(r.key.decode(), int.from_bytes(r.value, "big", signed=True))
            for r in kafka.read_topic(topic)]


def consumed_all(kafka: KafkaCluster, group: str, topic: str, total: int) -> bool:
    return sum(max(0, o) for o in kafka.committed_offsets(group, topic).values()) == total


def once(emitted: list[tuple[str, int]]) -> dict[str, int]:
    """The emitted results as a dict, asserting no window was emitted twice."""
    twice = [k for k, n in Counter(k for k, _ in emitted).items() if n > 1]
    assert not twice, f"emitted more than once: {twice[:5]}"
    return dict(emitted)


def test_windowed_final_across_stop_savepoint_fork_and_same_app(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out, fork_out = (topic_factory(PARTITIONS), topic_factory(PARTITIONS),
                          topic_factory(PARTITIONS))
    app_id, fork_id = kafka.unique_name("sp-win"), kafka.unique_name("sp-winf")
    first, second = events(0, 24_000, 7), events(24_000, 12_000, 8)
    everything = first + second + sentinels()
    expected = model(everything)
    assert sum(k.startswith("S|") for k in expected) > 300  # sessions, merged and split
    assert len(expected) > 2000

    original = windowed_final(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "a")
    produce(kafka, inp, first)
    with running_app(original):
        wait_until(lambda: sum(max(0, o) for o in kafka.committed_offsets(app_id, inp).values())
                   >= 2000, 120, "the original to process part of the input")
        # Mid-stream: stop (finish the batch, commit, leave the group), then the snapshot.
        sp_dir = original.savepoint(tmp_path / "sp", stop=True)
    before = results(kafka, out)   # what the original emitted before it stopped
    with Savepoint.open(sp_dir, topology=original.topology) as sp:
        manifest = sp.manifest
        assert manifest.consistency == CONSISTENCY_STOPPED
        saved = sum(o.offset for o in manifest.offsets if o.topic == inp and o.offset > 0)
        assert 2000 <= saved < len(everything)
        kinds = {s.name: s.kind for s in manifest.stores}
        assert kinds == {"win-counts": "window", "win-counts-pending-final": "kv",
                         "sess-counts": "session", "sess-counts-pending-final": "kv"}
        assert {w.key for w, _ in sp.entries("sess-counts")} <= set(KEYS)
        # The index-aware default partition keys put every entry where it already is.
        same = tmp_path / "same-partitions"
        writer = sp.writer()
        for store in kinds:
            writer.repartition_store(store, PARTITIONS)
        with Savepoint.open(writer.write(same)) as moved:
            for store in kinds:
                for p in range(PARTITIONS):
                    assert list(moved.raw_entries(store, p)) == list(sp.raw_entries(store, p))
        dropped = (sp.writer().drop_store("sess-counts").drop_store("sess-counts-pending-final")
                   .write(tmp_path / "dropped"))
        with Savepoint.open(dropped) as without:
            assert sorted(s.name for s in without.stores) == ["win-counts",
                                                              "win-counts-pending-final"]
        assert not (dropped / "stores" / "sess-counts").exists()
        with pytest.raises(SavepointError, match="missing from the savepoint: sess-counts, "):
            restore_savepoint(dropped, windowed_final(kafka.unique_name("sp-wind"),
                                                      kafka.bootstrap_servers, inp, fork_out,
                                                      tmp_path / "d"))
        pending = sum(sum(s.counts.values()) for s in manifest.stores
                      if s.name.endswith("-pending-final"))
        assert pending > 0  # open windows owe their results across the savepoint

    # A fork with a longer retention (other segment intervals) and the same app, both from
    # the savepoint, both fed the rest of the input.
    fork = windowed_final(fork_id, kafka.bootstrap_servers, inp, fork_out, tmp_path / "b",
                          retention=timedelta(seconds=60))
    plan = restore_savepoint(sp_dir, fork)
    assert sorted(plan.resegment) == ["sess-counts", "sess-counts-pending-final",
                                      "win-counts", "win-counts-pending-final"]
    resumed = windowed_final(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "a")
    assert restore_savepoint(sp_dir, resumed).resegment == {}
    with running_app(fork), running_app(resumed):
        produce(kafka, inp, second + sentinels())
        for group in (fork_id, app_id):
            wait_until(lambda g=group: consumed_all(kafka, g, inp, len(everything)), 180,
                       f"{group} to consume all input")

    assert once(results(kafka, out)) == expected           # same app: before + after
    forked = results(kafka, fork_out)
    assert once(before + forked) == expected                # original until stop + fork
    assert forked and before
