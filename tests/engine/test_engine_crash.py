"""SIGKILL crash tests: each guarantee keeps its promise across kills at random points."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from engine_helpers import (
    AppProcess,
    committed_total,
    crash_app_env,
    expected_outputs,
    kill_at_random_points,
    produce_ids,
    wait_committed,
)

from kstream.testing import KafkaCluster

RECORDS = 20_000
KILLS = 4


def run_with_kills(
    kafka: KafkaCluster,
    topic_factory,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    app_processes: list[AppProcess],
    guarantee: str,
) -> tuple[Counter[str], Counter[str]]:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"{guarantee}: seed {seed}")
    inp = topic_factory(partitions=4, prefix="crash-in")
    out = topic_factory(partitions=4, prefix="crash-out")
    app_id = kafka.unique_name(f"crash-{guarantee}")
    produce_ids(kafka, inp, RECORDS)
    env = crash_app_env(
        kafka, app_id, inp, out, guarantee, tmp_path / "state", CRASH_APP_THROTTLE_US="150"
    )
    kill_at_random_points(kafka, "crash_app", env, app_id, inp, RECORDS, KILLS, (1500, 4000),
                          tmp_path, app_processes, rng, guarantee, 120)
    final = AppProcess("crash_app", env, tmp_path / "final.log").start()
    app_processes.append(final)
    wait_committed(kafka, app_id, inp, RECORDS, 180, [final])
    assert final.terminate() == 0, final.log_tail()
    assert committed_total(kafka, app_id, inp) == RECORDS
    records = kafka.read_topic(out, timeout=60)
    got = Counter(r.value.decode() for r in records)  # type: ignore[union-attr]
    return got, expected_outputs(range(RECORDS))


@pytest.mark.slow
def test_exactly_once_survives_sigkill(kafka, topic_factory, tmp_path, app_processes):  # type: ignore[no-untyped-def]
    got, expected = run_with_kills(kafka, topic_factory, tmp_path, app_processes, "exactly_once")
    duplicates = sum(c - 1 for c in got.values() if c > 1)
    missing = sum((expected - got).values())
    assert duplicates == 0 and missing == 0, f"duplicates={duplicates} missing={missing}"
    assert got == expected


@pytest.mark.slow
def test_at_least_once_loses_nothing(kafka, topic_factory, tmp_path, app_processes):  # type: ignore[no-untyped-def]
    got, expected = run_with_kills(kafka, topic_factory, tmp_path, app_processes, "at_least_once")
    missing = expected - got
    duplicates = sum((got - expected).values())
    print(f"at_least_once: {duplicates} duplicate outputs after {KILLS} kills")
    assert not missing, f"lost {sum(missing.values())} outputs"
    assert set(got) == set(expected)


@pytest.mark.slow
def test_at_most_once_duplicates_nothing(kafka, topic_factory, tmp_path, app_processes):  # type: ignore[no-untyped-def]
    got, expected = run_with_kills(kafka, topic_factory, tmp_path, app_processes, "at_most_once")
    duplicated = {k: c for k, c in got.items() if c > 1}
    lost = sum((expected - got).values())
    print(f"at_most_once: {lost} outputs lost after {KILLS} kills")
    assert not duplicated, f"duplicated outputs: {list(duplicated.items())[:5]}"
    assert set(got) <= set(expected)
