"""The raw confluent-kafka loop and kstream sides of bench/peers, one run per process.

Started by bench/peers/run.py with the project's interpreter; prints one JSON line. Reuses the
loops and apps of bench/stateless.py (exactly-once, raw loop: one transaction every 100 ms) and
bench/stateful.py (exactly-once, RocksDB, every update emitted), unchanged. cpu_s is this
process's CPU time (all threads, getrusage) over the run call: output topic creation, group
join, processing, final commit and close; not the interpreter start or the imports.
cpu_window_s is the process CPU time (time.process_time, all threads) over the timed window
(first batch -> last record), read where those loops take their timestamps: for the raw loops a
stand-in for their module's `time` marks each perf_counter() call, for kstream a wrapper of
`run_app_timed`'s done-check marks the first sample with records and the sample that is done.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common  # noqa: E402
import stateful  # noqa: E402
import stateless  # noqa: E402

MARKS: list[tuple[float, float]] = []  # (perf_counter, process_time)


class MarkingClock:
    """Stands in for the `time` module of bench/stateless.py or bench/stateful.py: each
    perf_counter() call (launch, first batch, last record, durable) also notes the CPU time."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def perf_counter(self) -> float:
        now = time.perf_counter()
        MARKS.append((now, time.process_time()))
        return now


def run_app_timed_marking(app: Any, done: Callable[[dict[str, Any]], bool], timeout_s: float,
                          profile: str | None = None) -> _common.TimedRun:
    """`run_app_timed` noting the CPU time at the sample that sees the first input record and
    at the sample where `done` first holds (the samples that set t_start and t_done)."""

    def marking_done(stats: dict[str, Any]) -> bool:
        if not MARKS and stats.get("records_in", 0) > 0:
            MARKS.append((time.perf_counter(), time.process_time()))
        if done(stats):
            if len(MARKS) == 1:
                MARKS.append((time.perf_counter(), time.process_time()))
            return True
        return False

    return _common.run_app_timed(app, marking_done, timeout_s, profile)


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(framework: str, pipeline: str, servers: str, inp: str, n: int,
        partitions: int) -> dict[str, Any]:
    if pipeline == "stateless":
        if framework == "raw":
            return stateless.run_raw(servers, inp, n, partitions, stateless.EOS, 0.1)
        return stateless.run_kstream(servers, inp, n, partitions, stateless.EOS)
    if framework == "raw":
        return stateful.run_raw(servers, inp, n, partitions)
    return stateful.run_kstream(servers, inp, n, partitions, "rocksdb", False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=("raw", "kstream"), required=True)
    parser.add_argument("--pipeline", choices=("stateless", "stateful"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    module = stateless if args.pipeline == "stateless" else stateful
    if args.framework == "raw":
        module.time = MarkingClock()
    else:
        module.run_app_timed = run_app_timed_marking
    cpu0 = cpu_seconds()
    res = run(args.framework, args.pipeline, args.bootstrap, args.input, args.records,
              args.partitions)
    res["cpu_s"] = cpu_seconds() - cpu0
    # raw: launch, first batch, last record, durable; kstream: first sample, done sample.
    first, last = (MARKS[1], MARKS[2]) if args.framework == "raw" else (MARKS[0], MARKS[1])
    expected_marks = 4 if args.framework == "raw" else 2
    if len(MARKS) != expected_marks or abs((last[0] - first[0]) - res["seconds"]) > 0.01:
        raise RuntimeError(f"CPU marks do not match the timed window: {MARKS} {res}")
    res["cpu_window_s"] = last[1] - first[1]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
