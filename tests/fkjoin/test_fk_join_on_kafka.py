"""Foreign-key joins on the real broker (tests/fkjoin/apps/fk_app.py as OS processes).

* A random sequence of inserts, updates, FK changes and deletes on both sides, produced while
  the app runs: the output table (read_committed, last value per key, tombstones deleting)
  converges to the brute-force model of the final tables, with no stale or extra row.
* SIGKILL under exactly-once over >= 20k updates, killed at random points (local state
  sometimes deleted, so restores come from the changelogs): the output table read back
  equals the model exactly.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from fk_helpers import Op, model

from kstream.testing import AppProcess, KafkaCluster, wait_until

APPS = Path(__file__).parent / "apps"


def random_ops(rng: random.Random, count: int, orders: int, customers: int,
               null_fk: bool, start: int = 0) -> list[Op]:
    """`count` updates; every order value and customer name is unique (n from `start`)."""
    ops: list[Op] = []
    for n in range(start, start + count):
        if rng.random() < 0.6:
            value = None if rng.random() < 0.1 else {
                "n": n, "c": None if null_fk and rng.random() < 0.1
                else f"c{rng.randrange(customers)}"}
            ops.append(("order", f"o{rng.randrange(orders)}", value))
        else:
            value = None if rng.random() < 0.15 else f"name{n}"
            ops.append(("customer", f"c{rng.randrange(customers)}", value))
    return ops


def produce(kafka: KafkaCluster, topics: dict[str, str], ops: list[Op]) -> None:
    for kind, topic in (("order", topics["orders"]), ("customer", topics["customers"])):
        kafka.produce(topic, [(k.encode(), None if v is None else orjson.dumps(v))
                              for kind_, k, v in ops if kind_ == kind])


def output_table(kafka: KafkaCluster, topic: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for rec in kafka.read_topic(topic, timeout=120):
        assert rec.key is not None
        if rec.value is None:
            table.pop(rec.key.decode(), None)
        else:
            table[rec.key.decode()] = orjson.loads(rec.value)
    return table


def start(kafka: KafkaCluster, topics: dict[str, str], app_id: str, kind: str, state: Path,
          log: Path, procs: list[AppProcess], throttle_us: int = 0) -> AppProcess:
    env = {"FK_APP_ID": app_id, "FK_APP_BOOTSTRAP": kafka.bootstrap_servers,
           "FK_APP_STATE_DIR": str(state), "FK_APP_ORDERS": topics["orders"],
           "FK_APP_CUSTOMERS": topics["customers"], "FK_APP_OUT": topics["out"],
           "FK_APP_KIND": kind, "FK_APP_THROTTLE_US": str(throttle_us)}
    proc = AppProcess("fk_app", env, log, cwd=APPS).start()
    procs.append(proc)
    return proc


def explain(kafka: KafkaCluster, topic: str, ops: list[Op], key: str) -> str:
    """The inputs and outputs of one differing key, for the failure message."""
    orders = [(i, v) for i, (kind, k, v) in enumerate(ops) if kind == "order" and k == key]
    fks = {v["c"] for _, v in orders if v is not None}
    customers = [(i, k, v) for i, (kind, k, v) in enumerate(ops)
                 if kind == "customer" and k in fks]
    outputs = [(rec.partition, rec.offset, None if rec.value is None else orjson.loads(rec.value))
               for rec in kafka.read_topic(topic, timeout=60)
               if rec.key is not None and rec.key.decode() == key]
    return f"\n{key} updates {orders}\ncustomers {customers}\noutputs {outputs}"


def wait_for_model(kafka: KafkaCluster, topic: str, want: dict[str, Any], proc: AppProcess,
                   timeout: float, ops: list[Op] | None = None) -> None:
    last: list[dict[str, Any]] = [{}]

    def converged() -> bool:
        if not proc.alive():
            raise AssertionError(f"app exited:\n{proc.log_tail()}")
        last[0] = output_table(kafka, topic)
        return last[0] == want

    try:
        wait_until(converged, timeout, "the output table to equal the model", interval=1.0)
    except TimeoutError:
        got = last[0]
        diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want)
                if got.get(k) != want.get(k)}
        detail = "" if ops is None or not diff else explain(kafka, topic, ops, next(iter(diff)))
        raise AssertionError(f"{len(diff)} keys differ (got, want): "
                             f"{dict(list(diff.items())[:10])}{detail}") from None


@pytest.mark.parametrize("kind", ["inner", "left"])
def test_fk_join_on_kafka_equals_the_model(kind: str, kafka: KafkaCluster, tmp_path: Path,
                                           fk_processes: list[AppProcess]) -> None:
    rng = random.Random(int(os.environ.get("FK_SEED", "13")))
    topics = {"orders": kafka.create_topic(partitions=3),
              "customers": kafka.create_topic(partitions=2),
              "out": kafka.create_topic(partitions=3)}
    proc = start(kafka, topics, kafka.unique_name(f"fk-{kind}"), kind, tmp_path / "state",
                 tmp_path / "app.log", fk_processes)
    ops: list[Op] = []
    for _ in range(4):  # in rounds, while the app runs: updates race round trips
        chunk = random_ops(rng, 1500, orders=300, customers=60, null_fk=kind == "left",
                           start=len(ops))
        ops += chunk
        produce(kafka, topics, chunk)
    wait_for_model(kafka, topics["out"], model(ops, kind == "left"), proc, 180, ops)
    assert proc.terminate(60) == 0, proc.log_tail()


@pytest.mark.slow
def test_fk_join_exactly_once_survives_sigkill(kafka: KafkaCluster, tmp_path: Path,
                                               fk_processes: list[AppProcess]) -> None:
    seed = int(os.environ.get("FK_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"seed {seed}")
    topics = {"orders": kafka.create_topic(partitions=4),
              "customers": kafka.create_topic(partitions=3),
              "out": kafka.create_topic(partitions=4)}
    app_id = kafka.unique_name("fk-crash")
    state = tmp_path / "state"
    inputs = [topics["orders"], topics["customers"]]
    ops: list[Op] = []
    runs = 0
    kills = 0

    def committed() -> int:
        return sum(max(0, offset) for topic in inputs
                   for offset in kafka.committed_offsets(app_id, topic).values())

    for epoch in range(5):
        chunk = random_ops(rng, 4_500, orders=2_000, customers=300, null_fk=True,
                           start=len(ops))
        ops += chunk
        produce(kafka, topics, chunk)
        for _ in range(2):
            proc = start(kafka, topics, app_id, "left", state, tmp_path / f"run{runs}.log",
                         fk_processes, throttle_us=100)
            runs += 1
            # SIGKILL after it committed a random part of what is left of this epoch.
            # (At most everything produced: a run may already have committed it all.)
            done = committed()
            target = min(len(ops), done + rng.randrange(1, max(2, (len(ops) - done) * 6 // 10)))

            def progressed(p: AppProcess = proc, t: int = target) -> bool:
                if not p.alive():
                    raise AssertionError(f"app exited early:\n{p.log_tail()}")
                return committed() >= t

            wait_until(progressed, 180, f"{app_id} to commit {target} input offsets",
                       interval=0.1)
            proc.kill()
            kills += 1
            if rng.random() < 0.4:
                shutil.rmtree(state, ignore_errors=True)  # restore from changelogs only
        print(f"epoch {epoch}: {len(ops)} updates produced, {kills} kills")
    assert len(ops) >= 20_000
    proc = start(kafka, topics, app_id, "left", state, tmp_path / "final.log", fk_processes)
    wait_for_model(kafka, topics["out"], model(ops, True), proc, 300, ops)
    assert proc.terminate(60) == 0, proc.log_tail()
