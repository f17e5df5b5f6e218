"""Several instances of one app share the partitions; a SIGKILLed one's partitions move."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_helpers import (
    AppProcess,
    crash_app_env,
    expected_outputs,
    produce_ids,
    wait_committed,
)

from kstream.testing import KafkaCluster, wait_until

RECORDS = 20_000
PARTITIONS = 6
ASSIGN = re.compile(r"event=assign partitions=(\S+)")


def current_assignment(proc: AppProcess) -> set[int]:
    lines = ASSIGN.findall(proc.log_path.read_text(errors="replace"))
    if not lines or lines[-1] == "-":
        return set()
    return {int(p.rsplit("[", 1)[1].rstrip("]")) for p in lines[-1].split(",")}


def split_evenly(procs: list[AppProcess]) -> list[set[int]] | None:
    sets = [current_assignment(p) for p in procs]
    union = set().union(*sets)
    disjoint = sum(len(s) for s in sets) == len(union)
    if all(sets) and disjoint and union == set(range(PARTITIONS)):
        return sets
    return None


@pytest.mark.slow
@pytest.mark.parametrize("instances", [2, 3])
def test_instances_split_partitions_and_fail_over_exactly_once(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess], instances: int) -> None:
    inp = topic_factory(partitions=PARTITIONS, prefix="fo-in")
    out = topic_factory(partitions=PARTITIONS, prefix="fo-out")
    app_id = kafka.unique_name("failover")
    produce_ids(kafka, inp, RECORDS)
    procs = []
    for n in range(instances):
        env = crash_app_env(kafka, app_id, inp, out, "exactly_once", tmp_path / f"state{n}",
                            CRASH_APP_THROTTLE_US="400")
        procs.append(AppProcess("crash_app", env, tmp_path / f"instance{n}.log").start())
    app_processes.extend(procs)

    sets = wait_until(lambda: split_evenly(procs), 90, f"{instances} instances to split "
                      f"{PARTITIONS} partitions")
    print(f"{instances} instances: assignment {sets}")
    wait_committed(kafka, app_id, inp, 1000, 60, procs)

    victim, survivors = procs[0], procs[1:]
    moved = sets[0]
    before = kafka.committed_offsets(app_id, inp)
    killed_at = time.monotonic()
    victim.kill()

    def moved_partitions_progressed() -> bool:
        now = kafka.committed_offsets(app_id, inp)
        return all(now[p] > before[p] or now[p] >= RECORDS // PARTITIONS - 1 for p in moved)

    wait_until(moved_partitions_progressed, 120, "the killed instance's partitions to progress",
               interval=0.1)
    failover_s = time.monotonic() - killed_at
    print(f"{instances} instances: failover of partitions {sorted(moved)} took {failover_s:.1f}s")
    assert all(current_assignment(p) for p in survivors)

    wait_committed(kafka, app_id, inp, RECORDS, 180, survivors)
    for proc in survivors:
        assert proc.terminate() == 0, proc.log_tail()
    got = Counter(r.value.decode() for r in kafka.read_topic(out, timeout=60))  # type: ignore[union-attr]
    expected = expected_outputs(range(RECORDS))
    assert sum(c - 1 for c in got.values() if c > 1) == 0, "duplicates after failover"
    assert got == expected
