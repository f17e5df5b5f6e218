"""Offline CPU cost per record of the task handlers of the benchmark pipelines.

No broker: 100,000 confluent-kafka Messages built in memory are replayed through a task made by
`build_task` (as the engine makes them), in batches of 1,000 handed to the task's run handler
as the engine does (a checkout from before run handlers: one call per record), with the
engine's collector over a producer that drops everything (until 2026-12-03: a stand-in
collector with its own Python `send`, which fused sinks that produce inline would not use);
commits (changelog send to nowhere + local store write) every 2,000 records. Thread CPU
time, GC off, best of 5: on a shared machine CPU time is steadier than wall time. Compare two
checkouts by running each with its own PYTHONPATH, interleaved.

    PYTHONPATH=. python bench/handlers.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Message

sys.path.insert(0, str(Path(__file__).resolve().parent))

import stateful  # noqa: E402
import stateless  # noqa: E402
import windowed  # noqa: E402

from kstream.runtime.task import build_task  # noqa: E402

N = 100_000
BATCH = 1_000  # the engine's default batch_size
COMMIT_EVERY = 2_000


def messages(topic: str, kind: str) -> list[Message]:
    out = []
    for i in range(N):
        if kind == "accounts":  # bench/stateful.py's records
            key = f"a{i % 10000}".encode()
            value = orjson.dumps({"account": key.decode(), "amount": i % 1000})
        else:  # bench/stateless.py's and bench/windowed.py's orders
            key = f"u{i % 1000}".encode()
            value = orjson.dumps({"id": i, "user": key.decode(), "amount": i % 500,
                                  "country": "DE"})
        out.append(Message(topic=topic, partition=0, offset=i, key=key, value=value,
                           timestamp=(1, 1_700_000_000_000 + i)))
    return out


class NullProducer:
    """What the engine's collector calls, doing nothing: `produce` is a C method that takes any
    positional arguments (`"".format`), so no Python frame is measured that production lacks."""

    produce = "".format

    def poll(self, timeout: float = 0) -> int:
        return 0


def null_collector() -> Any:
    """The engine's own KafkaRecordCollector (transactional), over a producer that drops all."""
    from kstream.runtime.collector import KafkaRecordCollector
    from kstream.runtime.stats import EngineStats

    return KafkaRecordCollector(NullProducer(), EngineStats(),  # type: ignore[arg-type]
                                lambda topic: 1, transactional=True)


def per_record_us(app: Any, kind: str) -> float:
    topology = app.topology.bind(app.config.application_id)
    task = build_task(app.config.application_id, topology, topology.subtopologies()[0], 0,
                      null_collector(), Path(tempfile.mkdtemp(prefix="kstream-handlers-")))
    if hasattr(task, "run_handler"):
        run = task.run_handler("inp")
    else:  # before 2026-12-03
        handler = task.handler("inp")

        def run(batch: list[Any], start: int) -> int:
            for msg in batch:
                handler(msg)
            return len(batch)
    msgs = messages("inp", kind)
    batches = [msgs[i:i + BATCH] for i in range(0, len(msgs), BATCH)]
    best = float("inf")
    for _ in range(5):
        gc.collect()
        gc.disable()
        started = time.thread_time()
        for b, batch in enumerate(batches):
            run(batch, 0)  # one partition: the whole batch is one run
            if (b + 1) * BATCH % COMMIT_EVERY == 0:
                task.prepare_commit()
                task.after_commit()
        task.prepare_commit()
        task.after_commit()
        best = min(best, time.thread_time() - started)
        gc.enable()
    task.close()
    return best / N * 1e6


def main() -> None:
    rows = [
        ("count+sum, RocksDB", stateful.build_app("x", "inp", "out", "/tmp/x", "rocksdb", False),
         "accounts"),
        ("count+sum, memory", stateful.build_app("x", "inp", "out", "/tmp/x", "memory", False),
         "accounts"),
        ("tumbling count, RocksDB", windowed.build_app("x", "inp", "out", "/tmp/x", "rocksdb"),
         "orders"),
        ("stateless filter→map", stateless.build_app("x", "inp", "out", "exactly_once",
                                                     "/tmp/x"), "orders"),
    ]
    for name, app, kind in rows:
        print(f"{name:26} {per_record_us(app, kind):6.2f} µs/record (thread CPU)", flush=True)


if __name__ == "__main__":
    main()
