"""Exactly-once hand-over: a survivor fences a SIGKILLed member's transactional.id, so the
dead member's open transaction stops hiding the partitions it wrote long before the
transaction timeout (kstream.runtime.handover)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from engine_helpers import (
    AppProcess,
    committed_total,
    crash_app_env,
    expected_outputs,
    produce_ids,
)
from test_engine_failover import current_assignment, split_evenly

from kstream.runtime.handover import departed_owners
from kstream.testing import KafkaCluster, wait_until

RECORDS = 6000
PARTITIONS = 6
TXN_MS = 60_000  # the broker alone would abort the victim's transaction only after this


def test_departed_owners_are_previous_owners_no_longer_members() -> None:
    previous = {("t", 0): "app-a", ("t", 1): "app-b", ("t", 2): "app-c"}
    # b left; c is still a member (it only lost partition 2 to us): never fenced.
    assert departed_owners(previous, ["app-a", "app-c"], [("t", 1), ("t", 2)], "app-a") == {
        "app-b"}
    # Nothing of b's came to us: b is someone else's hand-over.
    assert departed_owners(previous, ["app-a"], [("t", 0)], "app-a") == set()
    # Unknown previous owner (first assignment): nobody.
    assert departed_owners({}, ["app-a"], [("t", 0)], "app-a") == set()


def _output(kafka: KafkaCluster, topic: str, isolation: str) -> Counter[str]:
    return Counter(r.value.decode()  # type: ignore[union-attr]
                   for r in kafka.read_topic(topic, timeout=30, isolation=isolation))


@pytest.mark.slow
def test_survivor_fences_killed_member_and_its_output_becomes_readable(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess]) -> None:
    inp = topic_factory(partitions=PARTITIONS, prefix="ho-in")
    out = topic_factory(partitions=PARTITIONS, prefix="ho-out")
    app_id = kafka.unique_name("handover")

    def env(n: int, commit_ms: int) -> dict[str, str]:
        return crash_app_env(kafka, app_id, inp, out, "exactly_once", tmp_path / f"state{n}",
                             CRASH_APP_TXN_MS=str(TXN_MS), CRASH_APP_COMMIT_MS=str(commit_ms))

    # The victim never commits on its own: everything it processes stays in one open
    # transaction until it dies.
    victim = AppProcess("crash_app", env(0, 600_000), tmp_path / "victim.log").start()
    survivor = AppProcess("crash_app", env(1, 100), tmp_path / "survivor.log").start()
    app_processes.extend([victim, survivor])
    sets = wait_until(lambda: split_evenly([victim, survivor]), 90, "2 instances to split")
    produce_ids(kafka, inp, RECORDS)
    expected = expected_outputs(range(RECORDS))
    ends = Counter(r.partition for r in kafka.read_topic(inp, timeout=30))

    def victim_holds_open_transaction() -> bool:
        assert victim.alive() and survivor.alive()
        committed = kafka.committed_offsets(app_id, inp)
        survivor_done = all(committed[p] >= ends[p] for p in sets[1])
        return survivor_done and sum(_output(kafka, out, "read_uncommitted").values()) >= sum(
            expected.values())

    wait_until(victim_holds_open_transaction, 90, "the victim to process its partitions in "
               "an open transaction", interval=0.5)
    assert _output(kafka, out, "read_committed") != expected  # hidden behind the open one
    killed_at = time.monotonic()
    victim.kill()

    def output_complete() -> bool:
        assert survivor.alive(), survivor.log_tail()
        return _output(kafka, out, "read_committed") == expected

    wait_until(output_complete, 40, "the output to be complete under read_committed",
               interval=0.2)
    took = time.monotonic() - killed_at
    print(f"SIGKILL -> complete read_committed output: {took:.1f}s (transaction timeout "
          f"{TXN_MS / 1000:.0f}s)")
    assert current_assignment(survivor) == set(range(PARTITIONS))
    assert "event=fence_departed" in survivor.log_path.read_text(errors="replace")
    assert took < TXN_MS / 1000 / 2, "not faster than the broker's own abort"

    # The victim comes back with its own identity: it re-initialises its transactional.id
    # (fencing the short-lived fencer, if anything) and works on.
    victim = AppProcess("crash_app", env(0, 100), tmp_path / "victim2.log").start()
    app_processes.append(victim)
    wait_until(lambda: split_evenly([victim, survivor]), 90, "2 instances to split again")
    produce_ids_from(kafka, inp, RECORDS, 2 * RECORDS)
    wait_until(lambda: committed_total(kafka, app_id, inp) >= 2 * RECORDS, 120,
               "all input processed", interval=0.2)
    for proc in (victim, survivor):
        assert proc.terminate() == 0, proc.log_tail()
    got = _output(kafka, out, "read_committed")
    assert sum(c - 1 for c in got.values() if c > 1) == 0, "duplicates after the hand-over"
    assert got == expected_outputs(range(2 * RECORDS))


def produce_ids_from(kafka: KafkaCluster, topic: str, start: int, stop: int) -> None:
    kafka.produce(topic, ((str(i).encode(), orjson.dumps({"id": i, "poison": False}))
                          for i in range(start, stop)))
