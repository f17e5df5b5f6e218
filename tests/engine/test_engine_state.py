"""Stateful processing on the real broker: exact aggregates across SIGKILLs, lost state dirs
and a crash between the Kafka commit and the local store flush."""

from __future__ import annotations

import random
import shutil
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from engine_helpers import AppProcess, committed_total, kill_at_random_points, wait_committed

from kstream.testing import KafkaCluster, wait_until

ACCOUNTS = 1000


def make_input(kafka: KafkaCluster, topic: str, start: int, count: int) -> None:
    kafka.produce(topic, ((str(i).encode(), orjson.dumps(
        {"id": i, "account": f"a{i % ACCOUNTS}", "amount": i % 97}))
        for i in range(start, start + count)))


def truth(count: int) -> dict[str, tuple[int, int]]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i in range(count):
        t = totals[f"a{i % ACCOUNTS}"]
        t[0] += 1
        t[1] += i % 97
    return {k: (c, s) for k, (c, s) in totals.items()}


def read_updates(kafka: KafkaCluster, topic: str) -> dict[str, list[tuple[int, int]]]:
    updates: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in kafka.read_topic(topic, timeout=90):
        v = orjson.loads(r.value)  # type: ignore[arg-type]
        updates[r.key.decode()].append((v["count"], v["sum"]))  # type: ignore[union-attr]
    return updates


def env_for(kafka: KafkaCluster, app_id: str, inp: str, out: str, guarantee: str,
            state_dir: Path, **extra: str) -> dict[str, str]:
    return {"STATEFUL_APP_BOOTSTRAP": kafka.bootstrap_servers, "STATEFUL_APP_ID": app_id,
            "STATEFUL_APP_INPUT": inp, "STATEFUL_APP_OUTPUT": out,
            "STATEFUL_APP_GUARANTEE": guarantee, "STATEFUL_APP_STATE_DIR": str(state_dir),
            **extra}


def run_to_end(kafka: KafkaCluster, env: dict[str, str], app_id: str, inp: str, out: str,
               total: int, log: Path, procs: list[AppProcess]) -> AppProcess:
    """Run until the output holds the true totals of the first `total` records, then stop."""
    proc = AppProcess("stateful_app", env, log).start()
    procs.append(proc)
    wait_committed(kafka, app_id, inp, total, 240, [proc])
    expected = truth(total)
    # The repartition hop drains after the input: wait for the totals themselves.
    wait_until(lambda: _finals(kafka, out) == expected or not proc.alive(), 240,
               "final aggregates", interval=0.5)
    assert proc.terminate() == 0, proc.log_tail()
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_aggregates_survive_sigkill(kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
                                    app_processes: list[AppProcess], guarantee: str) -> None:
    records, kills = 50_000, 3
    rng = random.Random(seed := random.randrange(1 << 30))
    print(f"{guarantee}: seed {seed}")
    inp, out = topic_factory(partitions=4), topic_factory(partitions=4)
    app_id = kafka.unique_name(f"state-{guarantee}")
    make_input(kafka, inp, 0, records)
    env = env_for(kafka, app_id, inp, out, guarantee, tmp_path / "state",
                  STATEFUL_APP_THROTTLE_US="60", STATEFUL_APP_COMMIT_MS="200")
    kill_at_random_points(kafka, "stateful_app", env, app_id, inp, records, kills,
                          (4000, 10000), tmp_path, app_processes, rng, guarantee, 180)
    final = AppProcess("stateful_app", env, tmp_path / "final.log").start()
    app_processes.append(final)
    expected = truth(records)

    def caught_up() -> bool:
        finals = _finals(kafka, out)
        if guarantee == "exactly_once":
            return finals == expected
        # At-least-once may count a replayed record twice: wait until every key got there.
        return all(finals.get(k, (0, 0))[0] >= c for k, (c, _) in expected.items())

    wait_until(lambda: caught_up() or not final.alive(), 240, "final aggregates", interval=1.0)
    assert final.terminate() == 0, final.log_tail()
    updates = read_updates(kafka, out)
    if guarantee == "exactly_once":
        for key, (count, total) in expected.items():
            got = updates[key]
            assert got[-1] == (count, total), key
            assert [c for c, _ in got] == list(range(1, count + 1)), f"{key}: dup/lost update"
    else:
        for key, (count, _total) in expected.items():
            counts = {c for c, _ in updates[key]}
            assert set(range(1, count + 1)) <= counts, f"{key}: an update was lost"


def _finals(kafka: KafkaCluster, out: str) -> dict[str, tuple[int, int]]:
    return {k: v[-1] for k, v in read_updates(kafka, out).items()}


def test_state_dir_deleted_is_rebuilt_from_changelog(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path,
                                                     app_processes: list[AppProcess]) -> None:
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    app_id = kafka.unique_name("rebuild")
    state = tmp_path / "state"
    env = env_for(kafka, app_id, inp, out, "exactly_once", state)
    make_input(kafka, inp, 0, 5000)
    run_to_end(kafka, env, app_id, inp, out, 5000, tmp_path / "first.log", app_processes)
    shutil.rmtree(state)
    make_input(kafka, inp, 5000, 5000)
    second = run_to_end(kafka, env, app_id, inp, out, 10_000, tmp_path / "second.log",
                        app_processes)
    assert "restored" in second.log_path.read_text()
    assert _finals(kafka, out) == truth(10_000)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_crash_between_kafka_commit_and_local_flush_heals(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess], guarantee: str) -> None:
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    app_id = kafka.unique_name("heal")
    state = tmp_path / "state"
    make_input(kafka, inp, 0, 6000)
    env = env_for(kafka, app_id, inp, out, guarantee, state, STATEFUL_APP_BATCH="200",
                  STATEFUL_APP_THROTTLE_US="200", STATEFUL_APP_COMMIT_MS="100",
                  KSTREAM_FAULT="after_commit_before_flush:3")
    crashing = AppProcess("stateful_app", env, tmp_path / "crash.log").start()
    app_processes.append(crashing)
    wait_until(lambda: not crashing.alive(), 60, "the injected crash")
    assert crashing.proc is not None and crashing.proc.returncode == -9
    assert committed_total(kafka, app_id, inp) > 0
    healed = run_to_end(kafka, env_for(kafka, app_id, inp, out, guarantee, state), app_id,
                        inp, out, 6000, tmp_path / "healed.log", app_processes)
    log = healed.log_path.read_text()
    assert "restored" in log, "the changelog tail was not replayed"
    finals = _finals(kafka, out)
    assert finals == truth(6000)
