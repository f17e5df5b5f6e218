"""Standby replicas on the real broker: each instance keeps warm copies of the other's stores,
so when one is SIGKILLed the survivor restores only the lag, and the output stays exact."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from availability_helpers import Load, assignments, restores, truth
from engine_helpers import AppProcess
from test_engine_rolling_restart import committed, split, stateful_env, updates_by_key

from kstream.runtime.standby import Member, place_standbys, range_owner
from kstream.testing import KafkaCluster, wait_until

STANDBYS = re.compile(r"event=standbys tasks=(\S+)")
LAG = re.compile(r"^kstream_standby_lag_records\{([^}]*)\} (\S+)$", re.MULTILINE)
LABEL = re.compile(r'(\w+)="([^"]*)"')


def test_range_owner_matches_librdkafka_range_order() -> None:
    members = ["a", "b", "c"]
    assert [range_owner(p, 6, members) for p in range(6)] == ["a", "a", "b", "b", "c", "c"]
    assert [range_owner(p, 7, members) for p in range(7)] == ["a", "a", "a", "b", "b", "c", "c"]
    assert [range_owner(p, 2, members) for p in range(2)] == ["a", "b"]
    assert range_owner(0, 3, []) is None


def test_first_standby_sits_where_the_task_goes_when_its_owner_dies() -> None:
    topics = {1: ["rep"], 0: ["in"]}
    counts = {"in": 6, "rep": 6}
    members = [Member(k, frozenset((t, p) for t in ("in", "rep") for p in parts))
               for k, parts in (("a", (0, 1)), ("b", (2, 3)), ("c", (4, 5)))]
    placed = place_standbys(members, topics, counts, 1)
    for dead in "abc":
        survivors = sorted(m.key for m in members if m.key != dead)
        owned = next(m for m in members if m.key == dead).partitions
        for _t, p in owned:
            assert (1, p) in placed[range_owner(p, 6, survivors) or ""]
    assert sum(len(v) for v in placed.values()) == 12  # one standby per task, 2 subs x 6
    two = place_standbys(members, {1: ["rep"]}, counts, 2)
    assert all(len(v) == 4 for v in two.values())  # every task on both other members
    assert place_standbys(members, {1: ["rep"]}, counts, 5) == two  # capped by members


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def standby_lags(port: int) -> dict[tuple[str, int], int]:
    """kstream_standby_lag_records by (store, partition) from an instance's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = {}
    for labels, value in LAG.findall(text):
        named = dict(LABEL.findall(labels))
        found[(named["store"], int(named["partition"]))] = int(float(value))
    return found


def standby_tasks(path: Path) -> set[str]:
    found = STANDBYS.findall(path.read_text(errors="replace"))
    return set() if not found or found[-1] == "-" else set(found[-1].split(","))


@pytest.mark.slow
def test_failover_onto_a_standby_restores_only_the_lag(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess]) -> None:
    inp = topic_factory(partitions=4, prefix="sb-in")
    out = topic_factory(partitions=4, prefix="sb-out")
    app_id = kafka.unique_name("standby")
    load = Load(kafka, inp, chunk=200, period_s=0.1).start(first=20_000)
    ports = [free_port() for _ in range(2)]
    envs = [stateful_env(kafka, app_id, inp, out, tmp_path / f"s{n}",
                         KSTREAM_NUM_STANDBY_REPLICAS="1", KSTREAM_METRICS_PORT=str(ports[n]))
            for n in range(2)]
    procs = [AppProcess("stateful_app", env, tmp_path / f"i{n}.log").start()
             for n, env in enumerate(envs)]
    app_processes.extend(procs)
    try:
        sets = wait_until(lambda: split(procs, inp, 4), 120, "2 instances to split the input")
        # Each keeps standbys of the other's stateful tasks (sub-topology 1).
        wanted = [{f"1_{p}" for p in sets[1 - n]} for n in range(2)]
        wait_until(lambda: [standby_tasks(p.log_path) for p in procs] == wanted, 60,
                   f"standbys {wanted}")
        since = committed(kafka, app_id, inp)
        wait_until(lambda: all(committed(kafka, app_id, inp)[p] > since[p] + 500
                               for p in range(4)), 120, "processing with standbys")
        # The lag metric: one series per standby store partition, following closely.
        for n in range(2):
            lags = wait_until(lambda n=n: (got := standby_lags(ports[n])) and all(
                v <= 2000 for v in got.values()) and got, 60, f"instance {n}'s standby lags")
            assert set(lags) == {("totals", p) for p in sets[1 - n]}, lags
            print(f"instance {n}: standby lag {lags}")
        victim, survivor = procs
        killed = time.monotonic()
        victim.kill()
        wait_until(lambda: assignments(survivor.log_path, inp)[-1] == set(range(4)), 60,
                   "the survivor to take every partition")
        print(f"survivor owned all partitions {time.monotonic() - killed:.1f}s after SIGKILL")
    finally:
        produced = load.stop()
    expected = truth(produced)
    wait_until(lambda: {k: v[-1] for k, v in updates_by_key(kafka, out).items()} == expected
               or not survivor.alive(), 240, "final aggregates", interval=1.0)
    took = restores(survivor.log_path)
    print(f"{produced} records; survivor's restores (stores, from scratch, records): {took}")
    assert survivor.terminate(60) == 0, survivor.log_tail()
    # The first restore was of its own (new) stores; the failover's restored only the lag.
    assert took[-1][1] == 0, "a moved store was restored from scratch"
    assert took[-1][2] < produced // 20, "the failover restored more than a standby's lag"
    got = updates_by_key(kafka, out)
    for key, (count, total) in expected.items():
        assert [c for c, _ in got[key]] == list(range(1, count + 1)), f"{key}: dup/lost update"
        assert got[key][-1] == (count, total), key
