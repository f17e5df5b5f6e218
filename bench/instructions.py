"""Instructions per record of the benchmark pipelines' task path, counted by valgrind.

Why: on a shared 2-core host CPU time per record varies by a third between identical runs;
instruction counts do not. Each pipeline runs twice under `valgrind --tool=callgrind` with the
same warm-up and N or 2N measured records; the difference divided by N is the cost of one more
record (start-up, imports and warm-up cancel out). No broker: the Messages of
`bench/handlers.py` go in batches of 1,000 through the task's run handler as the engine hands
them over (a checkout from before run handlers: through a copy of the engine's old per-record
dispatch loop), into the engine's collector over a producer that drops everything, with a
commit every 2,000 records (so stateful rows include their commits' share); the garbage
collector is off while measuring and the hash seed fixed, so counts repeat. The raw loop's
body (loads, filter, map, dumps, produce into a no-op) is the `raw` row. Needs valgrind on
PATH; takes about a minute per row.

    PYTHONPATH=. python bench/instructions.py [--rows stateless,raw,windowed,count,count-memory]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import handlers  # noqa: E402
import stateful  # noqa: E402
import stateless  # noqa: E402
import windowed  # noqa: E402

from kstream.runtime.task import build_task  # noqa: E402

ROWS = ("stateless", "raw", "windowed", "count", "count-memory")
WARMUP = 10_000
BATCH = 1_000
COMMIT_EVERY = 2_000


def _app(row: str) -> tuple[Any, str]:
    if row == "windowed":
        return windowed.build_app("x", "inp", "out", "/tmp/x", "rocksdb"), "orders"
    if row in ("count", "count-memory"):
        backend = "memory" if row == "count-memory" else "rocksdb"
        return stateful.build_app("x", "inp", "out", "/tmp/x", backend, False), "accounts"
    return stateless.build_app("x", "inp", "out", "exactly_once", "/tmp/x"), "orders"


def _task_path(row: str) -> tuple[Callable[[list[Any]], None], Callable[[], None]]:
    """(process one batch, commit) for a row's task, built as the engine builds it."""
    app, _kind = _app(row)
    topology = app.topology.bind(app.config.application_id)
    task = build_task(app.config.application_id, topology, topology.subtopologies()[0], 0,
                      handlers.null_collector(),
                      Path(tempfile.mkdtemp(prefix="kstream-instructions-")))

    def commit() -> None:
        task.prepare_commit()
        task.after_commit()

    if hasattr(task, "run_handler"):
        run = task.run_handler("inp")

        def batch(msgs: list[Any]) -> None:
            i, end = 0, len(msgs)
            while i < end:
                i = run(msgs, i)
        return batch, commit

    handler = task.handler("inp")  # before 2026-12-03: the engine dispatched per record
    by_topic = {"inp": {0: handler}}

    def per_record(msgs: list[Any]) -> None:
        last_topic, last_partition, current = None, None, None
        for msg in msgs:
            if msg.error() is not None:
                continue
            topic, partition = msg.topic(), msg.partition()
            if partition != last_partition or topic != last_topic:
                last_topic, last_partition = topic, partition
                current = by_topic.get(topic, {}).get(partition)
            if current is not None:
                current(msg)
    return per_record, commit


def _raw_path() -> tuple[Callable[[list[Any]], None], Callable[[], None]]:
    import orjson

    loads, dumps, produce = orjson.loads, orjson.dumps, "".format

    def batch(msgs: list[Any]) -> None:
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(msg.error())
            v = loads(msg.value())
            if v["amount"] >= stateless.MIN_AMOUNT:
                produce("out", dumps({"id": v["id"], "user": v["user"],
                                      "amount_cents": v["amount"] * 100}), msg.key())
    return batch, lambda: None


def inner(row: str, measured: int, most: int) -> None:
    """The program valgrind runs: warm-up, then `measured` records. Both runs build the same
    `most` Messages, so building them cancels out too."""
    handlers.N = WARMUP + most
    kind = _app(row)[1] if row != "raw" else "orders"
    msgs = handlers.messages("inp", kind)[:WARMUP + measured]
    batch, commit = _raw_path() if row == "raw" else _task_path(row)
    for start in range(0, len(msgs), BATCH):
        if start == WARMUP:
            gc.collect()
            gc.disable()  # a collection's cost depends on what else lives, not on the record
        batch(msgs[start:start + BATCH])
        if (start + BATCH) % COMMIT_EVERY == 0:
            commit()
    commit()


def count(row: str, measured: int, most: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        # A fixed hash seed: dict and set layouts, and so instruction counts, repeat exactly.
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
                        sys.executable, __file__, "--inner", row, "--measured",
                        str(measured), "--most", str(most)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        totals = [int(m.group(1)) for f in Path(tmp).glob("callgrind.out.*")
                  for m in [re.search(r"^(?:summary|totals): (\d+)", f.read_text(), re.M)]
                  if m is not None]
    return sum(totals)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--records", type=int, default=10_000, help="N (a multiple of 2,000)")
    parser.add_argument("--inner", help="internal: the row to run under valgrind")
    parser.add_argument("--measured", type=int, help="internal")
    parser.add_argument("--most", type=int, help="internal")
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.measured, args.most)
        return
    print("| row | instructions per record |\n|---|---|")
    n = args.records
    for row in args.rows.split(","):
        once, twice = count(row, n, 2 * n), count(row, 2 * n, 2 * n)
        print(f"| {row} | {(twice - once) / args.records:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
