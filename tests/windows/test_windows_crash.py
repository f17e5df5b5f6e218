"""SIGKILL crash test on a real broker under exactly-once: final results exactly once with
exact values; update mode's last value per window is exact."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from engine_helpers import AppProcess, committed_total, wait_committed

from kstream.testing import KafkaCluster
from serdes import StringSerde, WindowedSerde

APPS = Path(__file__).parent / "apps"
PARTITIONS = 4
PER_PARTITION = 5_000
KEYS_PER_PARTITION = 5
KILLS = int(os.environ.get("WINDOW_CRASH_KILLS", "4"))
SIZE, GRACE = 1000, 300


class WindowAppProcess(AppProcess):
    """engine_helpers.AppProcess, started from this directory's apps."""

    def start(self) -> WindowAppProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kstream.cli", "run", f"{self.module}:app"],
            cwd=APPS, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self


def make_input(rng: random.Random) -> dict[int, list[tuple[str, int, int]]]:
    """Per partition: (key, id, ts); out of order by less than the grace, so none is late.

    Event times are recent: outputs carry them, and the broker's time-based retention would
    delete output segments stamped decades ago.
    """
    base = int(time.time()) * 1000 - 3_600_000
    data: dict[int, list[tuple[str, int, int]]] = {}
    ident = 0
    for p in range(PARTITIONS):
        rows = []
        for n in range(PER_PARTITION):
            rows.append((f"k{p}-{n % KEYS_PER_PARTITION}", ident, base + n * 20
                         - rng.randrange(GRACE - 50)))
            ident += 1
        data[p] = rows
    return data


def expected(data: dict[int, list[tuple[str, int, int]]]) -> tuple[dict[Any, list[int]],
                                                                   dict[Any, list[int]]]:
    """(final results, every window's totals) keyed by (key, start)."""
    totals: dict[Any, list[int]] = {}
    final: dict[Any, list[int]] = {}
    for rows in data.values():
        for key, ident, ts in rows:
            agg = totals.setdefault((key, ts - ts % SIZE), [0, 0])
            agg[0] += 1
            agg[1] += ident
        stream_time = max(ts for _, _, ts in rows)
        keys = {key for key, _, _ in rows}
        final.update({w: v for w, v in totals.items()
                      if w[0] in keys and w[1] + SIZE + GRACE <= stream_time})
    return final, totals


def read(kafka: KafkaCluster, topic: str) -> list[tuple[tuple[str, int], list[int]]]:
    serde = WindowedSerde(StringSerde())
    out = []
    for r in kafka.read_topic(topic, timeout=60):
        w = serde.deserialize(r.key)
        assert w is not None and w.end == w.start + SIZE
        out.append(((w.key, w.start), orjson.loads(r.value)))  # type: ignore[arg-type]
    return out


@pytest.mark.slow
def test_windowed_exactly_once_survives_sigkill(kafka, topic_factory, tmp_path,  # type: ignore[no-untyped-def]
                                                 window_processes) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")
    inp = topic_factory(partitions=PARTITIONS, prefix="win-in")
    out_final = topic_factory(partitions=PARTITIONS, prefix="win-final")
    out_update = topic_factory(partitions=PARTITIONS, prefix="win-update")
    data = make_input(rng)
    for p, rows in data.items():
        kafka.produce(inp, ((k.encode(), orjson.dumps({"id": i, "ts": ts}))
                            for k, i, ts in rows), partition=p)
    app_id = kafka.unique_name("win-crash")
    env = {"WINDOW_APP_BOOTSTRAP": kafka.bootstrap_servers, "WINDOW_APP_ID": app_id,
           "WINDOW_APP_INPUT": inp, "WINDOW_APP_FINAL": out_final,
           "WINDOW_APP_UPDATE": out_update, "WINDOW_APP_STATE_DIR": str(tmp_path / "state"),
           "WINDOW_APP_THROTTLE_US": "150", "KSTREAM_LOG_LEVEL": "INFO"}
    total = PARTITIONS * PER_PARTITION
    progress = 0
    for n in range(KILLS):
        target = progress + rng.randrange(1500, 4000)
        proc = WindowAppProcess("window_app", env, tmp_path / f"run{n}.log").start()
        window_processes.append(proc)
        progress = wait_committed(kafka, app_id, inp, target, 120, [proc])
        proc.kill()
        print(f"killed run {n} at {progress} committed offsets")
    # Lose the local state too: the last run restores window and pending-result stores from
    # their changelogs.
    shutil.rmtree(tmp_path / "state")
    final_proc = WindowAppProcess("window_app", env, tmp_path / "final.log").start()
    window_processes.append(final_proc)
    wait_committed(kafka, app_id, inp, total, 180, [final_proc])
    assert final_proc.terminate() == 0, final_proc.log_tail()
    assert "kstream.restore restored" in final_proc.log_path.read_text()
    assert committed_total(kafka, app_id, inp) == total

    want_final, want_totals = expected(data)
    got_final = read(kafka, out_final)
    repeats = {w: c for w, c in Counter(w for w, _ in got_final).items() if c > 1}
    assert not repeats, f"final results emitted more than once: {list(repeats.items())[:5]}"
    assert_same(dict(got_final), want_final, "final")
    latest: dict[tuple[str, int], list[int]] = {}
    for window, value in read(kafka, out_update):
        latest[window] = value
    assert_same(latest, want_totals, "update")


def assert_same(got: dict[Any, Any], want: dict[Any, Any], what: str) -> None:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted((w, got[w], want[w]) for w in set(got) & set(want) if got[w] != want[w])
    assert not (missing or extra or wrong), (
        f"{what}: {len(missing)} missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
        f"{len(wrong)} wrong (window, got, want) {wrong[:5]}")
