"""SIGKILL crash test on a real broker under exactly-once: a stream-stream left join and a
table-table outer join (tests/joins/apps/join_app.py) over 40k records, killed at random
points, local state deleted before some restarts (restored from the changelogs).

Checked: every expected stream join result exactly once, no unmatched result for a record
that has a partner (nor a missing one for a record that has none); the table join's output
per key is exactly the change sequence of one order of the two tables' updates.

Input comes in epochs, each produced once the previous one is committed. Within an epoch no
record can be late whatever order the app reads the two topics in (grace covers the epoch's
time span); the next epoch's times close every window of the previous one, so unmatched
results of epoch e are emitted while epoch e+1 is processed (and kills strike there too).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson
import pytest

from kstream.testing import AppProcess, KafkaCluster, wait_until

APPS = Path(__file__).parent / "apps"
PARTITIONS = 4
EPOCHS = 4
STREAM_PER_EPOCH = 2_500  # per side
TABLE_PER_EPOCH = 2_500  # per side
STREAM_KEYS, TABLE_KEYS = 800, 300
SPAN, WINDOW, GRACE = 60_000, 5_000, 70_000
EPOCH_GAP = SPAN + WINDOW + GRACE + 1_000
KILLS_PER_EPOCH = int(os.environ.get("JOIN_CRASH_KILLS_PER_EPOCH", "2"))


class Inputs:
    """Generates the epochs and remembers everything produced (for the expectations)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.base = int(time.time()) * 1000 - 2 * 3_600_000
        self.left: list[tuple[str, int, int]] = []   # (key, id, ts)
        self.right: list[tuple[str, int, int]] = []
        self.tables: dict[int, list[tuple[str, str | None]]] = {0: [], 1: []}
        self.next_id = 0

    def stream_epoch(self, epoch: int) -> tuple[list[Any], list[Any]]:
        start = self.base + epoch * EPOCH_GAP
        sides: list[list[Any]] = [[], []]
        for side, store in ((0, self.left), (1, self.right)):
            for _ in range(STREAM_PER_EPOCH):
                row = (f"k{self.rng.randrange(STREAM_KEYS)}", self.next_id,
                       start + self.rng.randrange(SPAN))
                self.next_id += 1
                store.append(row)
                sides[side].append((row[0].encode(), orjson.dumps({"id": row[1]}), row[2]))
        return sides[0], sides[1]

    def table_epoch(self, epoch: int) -> tuple[list[Any], list[Any]]:
        sides: list[list[Any]] = [[], []]
        for side in (0, 1):
            for n in range(TABLE_PER_EPOCH):
                key = f"t{self.rng.randrange(TABLE_KEYS)}"
                value = None if self.rng.random() < 0.15 else f"{'lr'[side]}{epoch}-{n}"
                self.tables[side].append((key, value))
                sides[side].append((key.encode(), None if value is None else value.encode()))
        return sides[0], sides[1]

    def closing_time(self) -> int:
        return self.base + EPOCHS * EPOCH_GAP


def expected_stream_results(inputs: Inputs) -> Counter[tuple[str, int, int | None]]:
    by_key: dict[str, list[tuple[int, int]]] = {}
    for key, ident, ts in inputs.right:
        by_key.setdefault(key, []).append((ident, ts))
    want: Counter[tuple[str, int, int | None]] = Counter()
    for key, ident, ts in inputs.left:
        partners = [r for r, rts in by_key.get(key, []) if abs(rts - ts) <= WINDOW]
        for r in partners:
            want[(key, ident, r)] += 1
        if not partners:
            want[(key, ident, None)] += 1
    return want


def table_outputs_explained(left: list[str | None], right: list[str | None],
                            outputs: list[Any]) -> bool:
    """Is `outputs` the outer join's change sequence for some interleaving of the two sides'
    update sequences (each in its own order)? Breadth-first over (left done, right done,
    outputs matched)."""

    def join(lv: str | None, rv: str | None) -> Any:
        return None if lv is None and rv is None else [lv, rv]

    start = (0, 0, 0)
    seen = {start}
    queue = deque([start])
    while queue:
        i, j, o = queue.popleft()
        if i == len(left) and j == len(right) and o == len(outputs):
            return True
        lv = left[i - 1] if i else None
        rv = right[j - 1] if j else None
        steps = []
        if i < len(left):
            steps.append((i + 1, j, lv, left[i], join(lv, rv), join(left[i], rv)))
        if j < len(right):
            steps.append((i, j + 1, rv, right[j], join(lv, rv), join(lv, right[j])))
        for ni, nj, side_old, side_new, before, after in steps:
            emits = not (side_old is None and side_new is None) and not (
                before is None and after is None)
            if emits and (o == len(outputs) or outputs[o] != after):
                continue
            state = (ni, nj, o + 1 if emits else o)
            if state not in seen:
                seen.add(state)
                queue.append(state)
    return False


def test_the_table_check_rejects_duplicates_and_losses() -> None:
    left, right = ["a", None], ["x"]
    good = [["a", None], ["a", "x"], [None, "x"]]
    assert table_outputs_explained(left, right, good)
    assert table_outputs_explained(left, right, [[None, "x"], ["a", "x"], [None, "x"]])
    assert not table_outputs_explained(left, right, [good[0], good[0], *good[1:]])
    assert not table_outputs_explained(left, right, good[:2])
    assert not table_outputs_explained(left, right, [*good, None])


def committed(kafka: KafkaCluster, app_id: str, topics: list[str]) -> int:
    return sum(max(0, offset) for t in topics
               for offset in kafka.committed_offsets(app_id, t).values())


@pytest.mark.slow
def test_joins_exactly_once_survive_sigkill(kafka, topic_factory, tmp_path,  # type: ignore[no-untyped-def]
                                            join_processes) -> None:
    seed = int(os.environ.get("JOIN_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"seed {seed}")
    topics = {name: topic_factory(partitions=PARTITIONS, prefix=f"join-{name}")
              for name in ("left", "right", "tleft", "tright", "sout", "tout")}
    inputs_topics = [topics["left"], topics["right"], topics["tleft"], topics["tright"]]
    app_id = kafka.unique_name("join-crash")
    state = tmp_path / "state"
    env = {"JOIN_APP_BOOTSTRAP": kafka.bootstrap_servers, "JOIN_APP_ID": app_id,
           "JOIN_APP_LEFT": topics["left"], "JOIN_APP_RIGHT": topics["right"],
           "JOIN_APP_TLEFT": topics["tleft"], "JOIN_APP_TRIGHT": topics["tright"],
           "JOIN_APP_STREAM_OUT": topics["sout"], "JOIN_APP_TABLE_OUT": topics["tout"],
           "JOIN_APP_WINDOW_MS": str(WINDOW), "JOIN_APP_GRACE_MS": str(GRACE),
           "JOIN_APP_STATE_DIR": str(state), "JOIN_APP_THROTTLE_US": "150",
           "KSTREAM_LOG_LEVEL": "INFO"}
    inputs = Inputs(rng)
    produced = 0
    runs = 0
    proc: AppProcess | None = None

    def start() -> AppProcess:
        nonlocal runs
        p = AppProcess("join_app", env, tmp_path / f"run{runs}.log", cwd=APPS).start()
        runs += 1
        join_processes.append(p)
        return p

    def wait_for(target: int, p: AppProcess, timeout: float) -> int:
        def progressed() -> int:
            if not p.alive():
                raise AssertionError(f"app exited early:\n{p.log_tail()}")
            total = committed(kafka, app_id, inputs_topics)
            return total if total >= target else 0

        return wait_until(progressed, timeout, f"{app_id} to commit {target} offsets",
                          interval=0.1)

    restored_runs = []
    for epoch in range(EPOCHS):
        left, right = inputs.stream_epoch(epoch)
        tleft, tright = inputs.table_epoch(epoch)
        for topic, rows in ((topics["left"], left), (topics["right"], right),
                            (topics["tleft"], tleft), (topics["tright"], tright)):
            kafka.produce(topic, rows)
        before, produced = produced, produced + len(left) + len(right) + len(tleft) + len(tright)
        progress = before
        for _ in range(KILLS_PER_EPOCH):
            if progress >= produced:
                # The epoch is all committed already (a kill can land after the last commit):
                # a target beyond it could only be reached once the next epoch is produced.
                break
            target = progress + rng.randrange(1, max(2, (produced - progress) * 8 // 10))
            if proc is None:
                proc = start()
            progress = wait_for(target, proc, 180)
            proc.kill()
            proc = None
            print(f"epoch {epoch}: killed run {runs - 1} at {progress}/{produced} offsets")
            if rng.random() < 0.5:
                shutil.rmtree(state, ignore_errors=True)  # restore from changelogs only
                restored_runs.append(runs)
        if proc is None:
            proc = start()
        wait_for(produced, proc, 240)
    # Close the last epoch's windows: one far-future left record per partition.
    closing = inputs.closing_time()
    for p in range(PARTITIONS):
        kafka.produce(topics["left"], [(f"close-{p}".encode(), orjson.dumps({"id": -1}),
                                        closing)], partition=p)
    produced += PARTITIONS
    assert proc is not None
    proc.kill()
    shutil.rmtree(state, ignore_errors=True)
    restored_runs.append(runs)
    proc = start()
    wait_for(produced, proc, 240)
    assert proc.terminate() == 0, proc.log_tail()
    # A run whose state dir was deleted restores before its first assignment completes; a
    # run killed before it was assigned anything (the previous run had committed everything)
    # has nothing to show. The last run is always assigned and always restores.
    checked = 0
    for run in restored_runs:
        log_text = (tmp_path / f"run{run}.log").read_text()
        if "event=assign" in log_text or run == restored_runs[-1]:
            assert "restored" in log_text, f"run {run}"
            checked += 1
    assert checked >= 1

    got = Counter((r.key.decode(), *orjson.loads(r.value))  # type: ignore[union-attr, arg-type]
                  for r in kafka.read_topic(topics["sout"], timeout=120))
    want = expected_stream_results(inputs)
    missing, extra = want - got, got - want
    assert not missing and not extra, (
        f"stream join: {sum(missing.values())} missing {list(missing)[:5]}, "
        f"{sum(extra.values())} extra {list(extra)[:5]}")
    assert sum(got.values()) >= 10_000

    per_key: dict[str, list[Any]] = {}
    for r in kafka.read_topic(topics["tout"], timeout=120):
        per_key.setdefault(r.key.decode(), []).append(  # type: ignore[union-attr]
            None if r.value is None else orjson.loads(r.value))
    updates: dict[str, tuple[list[str | None], list[str | None]]] = {}
    for side in (0, 1):
        for key, value in inputs.tables[side]:
            updates.setdefault(key, ([], []))[side].append(value)
    unexplained = [k for k, (lv, rv) in updates.items()
                   if not table_outputs_explained(lv, rv, per_key.get(k, []))]
    assert not unexplained, (f"table join output of {len(unexplained)} keys fits no order of "
                             f"their updates, e.g. {unexplained[0]}: {per_key.get(unexplained[0])}")
