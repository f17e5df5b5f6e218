"""Issue 15, point 4a on the real broker: an aggregate's updates carry the largest
contributing timestamp (KIP-258) through SIGKILLs under exactly-once. The timestamp lives
with the aggregate in the store and, as the record timestamp, in the changelog, so a restored
store remembers it: an update after a restart never goes back in time."""

from __future__ import annotations

import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

import orjson
from engine_helpers import AppProcess, kill_at_random_points, wait_committed

from kstream.testing import KafkaCluster, wait_until

ACCOUNTS = 200
RECORDS = 20_000


def _event_time(i: int, base: int) -> int:
    """Out of order on purpose: a record is often older than ones before it."""
    return base + (i * 7919) % 3_600_000


def test_aggregate_timestamps_survive_sigkill(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                              tmp_path: Path,
                                              app_processes: list[AppProcess]) -> None:
    rng = random.Random(seed := random.randrange(1 << 30))
    print(f"seed {seed}")
    inp, out = topic_factory(partitions=4), topic_factory(partitions=4)
    app_id = kafka.unique_name("agg-ts")
    base = int(time.time() * 1000) - 2 * 3_600_000
    kafka.produce(inp, ((str(i).encode(),
                         orjson.dumps({"id": i, "account": f"a{i % ACCOUNTS}", "amount": 1}),
                         _event_time(i, base)) for i in range(RECORDS)))
    newest: dict[str, int] = defaultdict(int)
    for i in range(RECORDS):
        account = f"a{i % ACCOUNTS}"
        newest[account] = max(newest[account], _event_time(i, base))
    env = {"STATEFUL_APP_BOOTSTRAP": kafka.bootstrap_servers, "STATEFUL_APP_ID": app_id,
           "STATEFUL_APP_INPUT": inp, "STATEFUL_APP_OUTPUT": out,
           "STATEFUL_APP_GUARANTEE": "exactly_once", "STATEFUL_APP_STATE_DIR":
           str(tmp_path / "state"), "STATEFUL_APP_THROTTLE_US": "500",
           "STATEFUL_APP_COMMIT_MS": "200"}
    kill_at_random_points(kafka, "stateful_app", env, app_id, inp, RECORDS, 2, (4000, 8000),
                          tmp_path, app_processes, rng, "agg-ts", 180)
    # The last run also loses its local state: its timestamps come from the changelog.
    shutil.rmtree(tmp_path / "state")
    final = AppProcess("stateful_app", env, tmp_path / "final.log").start()
    app_processes.append(final)
    wait_committed(kafka, app_id, inp, RECORDS, 240, [final])

    def updates() -> dict[str, list[tuple[int, int]]]:
        got: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for r in kafka.read_topic(out, timeout=90):
            got[r.key.decode()].append(  # type: ignore[union-attr]
                (orjson.loads(r.value)["count"], r.timestamp))  # type: ignore[arg-type]
        return got

    per_account = RECORDS // ACCOUNTS
    wait_until(lambda: all(v[-1][0] == per_account for v in updates().values())
               and len(updates()) == ACCOUNTS or not final.alive(), 240, "final counts",
               interval=1.0)
    assert final.terminate() == 0, final.log_tail()
    got = updates()
    assert len(got) == ACCOUNTS
    for account, seq in got.items():
        assert [c for c, _ in seq] == list(range(1, per_account + 1)), f"{account}: dup/lost"
        stamps = [ts for _, ts in seq]
        assert all(a <= b for a, b in zip(stamps, stamps[1:], strict=False)), (
            f"{account}: an update went back in time: {stamps}")
        assert stamps[-1] == newest[account], account
    changelog = {r.key.decode(): r.timestamp  # type: ignore[union-attr]
                 for r in kafka.read_topic(f"{app_id}-totals-changelog", timeout=90)}
    assert changelog == dict(newest)
