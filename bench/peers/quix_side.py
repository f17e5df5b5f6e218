"""The Quix Streams side of bench/peers: runs in bench/peers/.venv-quix (its own confluent-kafka).

Started by bench/peers/run.py, one process per run; prints one JSON line. Same pipelines as
bench/stateless.py and bench/stateful.py, exactly-once, commit every 100 ms (kstream's and Kafka
Streams' exactly-once default; --commit-interval changes it):

- stateless: JSON orders -> filter amount >= 100 -> {"id", "user", "amount_cents"} -> output;
- stateful: running {"count", "sum"} per key (RocksDB state with a changelog, Quix's defaults),
  every update to the output topic.

Timed from the first input record to the last expected output record; cpu_s is this process's
CPU time (all threads, getrusage) from before `app.run()` to its return, cpu_window_s the same
clock (time.process_time) from the first input record to the last expected output record.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from typing import Any

from quixstreams import Application, State

MIN_AMOUNT = 100


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", choices=("stateless", "stateful"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--expected-out", type=int, required=True)
    parser.add_argument("--commit-interval", type=float, default=0.1)
    args = parser.parse_args()
    n, expected_out = args.records, args.expected_out

    with tempfile.TemporaryDirectory(prefix="quix-bench-") as state_dir:
        app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                          auto_offset_reset="earliest", processing_guarantee="exactly-once",
                          commit_interval=args.commit_interval, state_dir=state_dir,
                          loglevel="WARNING")
        inp = app.topic(args.input, key_deserializer="str", value_deserializer="json")
        out = app.topic(args.output, key_serializer="str", value_serializer="json")
        progress = {"in": 0, "out": 0}
        times: dict[str, float] = {}

        def check() -> None:
            if progress["in"] >= n and progress["out"] >= expected_out and "done" not in times:
                times["done"], times["cpu_done"] = time.perf_counter(), time.process_time()
                app.stop()

        def on_in(_value: Any) -> None:
            progress["in"] += 1
            if progress["in"] == 1:
                times["first"], times["cpu_first"] = time.perf_counter(), time.process_time()
            check()

        def on_out(_value: Any) -> None:
            progress["out"] += 1
            check()

        sdf = app.dataframe(inp).update(on_in)
        if args.pipeline == "stateless":
            sdf = sdf.filter(lambda v: v["amount"] >= MIN_AMOUNT)
            sdf = sdf.apply(lambda v: {"id": v["id"], "user": v["user"],
                                       "amount_cents": v["amount"] * 100})
        else:
            def add(v: dict[str, Any], state: State) -> dict[str, int]:
                agg = state.get("agg") or {"count": 0, "sum": 0}
                agg = {"count": agg["count"] + 1, "sum": agg["sum"] + v["amount"]}
                state.set("agg", agg)
                return agg

            sdf = sdf.apply(add, stateful=True)
        sdf = sdf.update(on_out)
        sdf.to_topic(out)

        cpu0, t0 = cpu_seconds(), time.perf_counter()
        app.run()
        t1, cpu1 = time.perf_counter(), cpu_seconds()
    if "done" not in times:
        raise SystemExit(f"quix stopped early: {progress}")
    seconds = times["done"] - times["first"]
    print(json.dumps({"rate": n / seconds, "seconds": seconds,
                      "startup_s": times["first"] - t0, "tail_s": t1 - times["done"],
                      "cpu_s": cpu1 - cpu0, "cpu_window_s": times["cpu_done"] - times["cpu_first"],
                      "consumed": progress["in"],
                      "records_out": progress["out"]}))


if __name__ == "__main__":
    main()
