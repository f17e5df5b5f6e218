"""Run apps as real OS processes so tests can SIGKILL them mid-stream."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson

from kstream.testing import AppProcess as _AppProcess
from kstream.testing import KafkaCluster, wait_until

APPS_DIR = Path(__file__).parent / "apps"


class AppProcess(_AppProcess):
    """An app module of tests/engine/apps as an OS process (see kstream.testing.AppProcess)."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(module, env, log_path, cwd=APPS_DIR)


def crash_app_env(
    kafka: KafkaCluster,
    app_id: str,
    inp: str,
    out: str,
    guarantee: str,
    state_dir: Path,
    **extra: str,
) -> dict[str, str]:
    env = {
        "CRASH_APP_BOOTSTRAP": kafka.bootstrap_servers,
        "CRASH_APP_ID": app_id,
        "CRASH_APP_INPUT": inp,
        "CRASH_APP_OUTPUT": out,
        "CRASH_APP_GUARANTEE": guarantee,
        "CRASH_APP_STATE_DIR": str(state_dir),
        "KSTREAM_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def produce_ids(
    kafka: KafkaCluster, topic: str, count: int, poison: set[int] | None = None
) -> None:
    poison = poison or set()
    kafka.produce(
        topic,
        ((str(i).encode(), orjson.dumps({"id": i, "poison": i in poison})) for i in range(count)),
    )


def expected_outputs(ids: range, skip: set[int] | None = None) -> Counter[str]:
    skip = skip or set()
    return Counter(
        f"{i}:{j}" for i in ids if i % 7 != 0 and i not in skip for j in range(i % 3 + 1)
    )


def committed_total(kafka: KafkaCluster, group: str, topic: str) -> int:
    return sum(max(0, off) for off in kafka.committed_offsets(group, topic).values())


def wait_committed(
    kafka: KafkaCluster,
    group: str,
    topic: str,
    at_least: int,
    timeout: float,
    procs: list[AppProcess] | None = None,
) -> int:
    def progressed() -> int:
        for p in procs or []:
            if not p.alive():
                raise AssertionError(f"app exited early:\n{p.log_tail()}")
        total = committed_total(kafka, group, topic)
        return total if total >= at_least else 0

    return wait_until(
        progressed, timeout, f"{group} to commit {at_least} offsets on {topic}", interval=0.1
    )


def kill_at_random_points(kafka: KafkaCluster, module: str, env: dict[str, str], app_id: str,
                          inp: str, records: int, kills: int, step: tuple[int, int],
                          log_dir: Path, procs: list[AppProcess], rng: random.Random,
                          label: str, timeout: float) -> None:
    """Start the app, SIGKILL it once its committed input offsets pass a random point, and
    repeat; kill points advance by a random `step` and stay below 90 % of the input."""
    progress = 0
    for n in range(kills):
        target = min(progress + rng.randrange(*step), records * 9 // 10)
        if target <= progress:
            break
        proc = AppProcess(module, env, log_dir / f"run{n}.log").start()
        procs.append(proc)
        progress = wait_committed(kafka, app_id, inp, target, timeout, [proc])
        proc.kill()
        print(f"{label}: killed run {n} at {progress} committed input offsets")
