"""Windowed aggregation benchmark: kstream vs a hand-written confluent-kafka loop, exactly-once.

Pipeline (both sides): JSON orders keyed by user -> 1-minute tumbling count per user (record
timestamps) -> every update to an output topic (key: user bytes + window start + end, value:
int64 count), and the changed windows to a changelog topic at each commit, one transaction
every 100 ms with the consumed offsets.

    python bench/windowed.py [--records 500000] [--partitions 4] [--repeat 1]
                             [--backend rocksdb|memory] [--profile PATH]

Throughput = records consumed / (time the last input record was processed - time the first
batch arrived), as in bench/stateless.py (group join and final commit excluded).
"""

from __future__ import annotations

import argparse
import datetime
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    count_topic,
    create_topics,
    machine_note,
    median,
    peak_rss_mb,
    produce_orders,
    run_app_timed,
    unique,
)

from kstream import App, StreamBuilder  # noqa: E402
from kstream.windows import TumblingWindows  # noqa: E402
from serdes import Int64Serde, JsonSerde, StringSerde  # noqa: E402

SIZE_MS = 60_000
RUN_TIMEOUT_S = 600.0
COMMIT_EVERY_S = 0.1
_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")


# -- raw confluent-kafka loop ------------------------------------------------------------------
def run_raw(servers: str, inp: str, n: int, partitions: int) -> dict[str, Any]:
    """The same windowing by hand: a dict per (key, window), output per update, changed
    windows to a changelog per transaction."""
    out, changelog = unique("raw-win-out"), unique("raw-win-changelog")
    create_topics(servers, [out, changelog], partitions)
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-win-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "transactional.id": unique("raw-win-txn"),
                         "transaction.timeout.ms": 10_000})
    producer.init_transactions(30)
    counts: dict[tuple[bytes, int], int] = {}
    dirty: dict[tuple[bytes, int, int], int] = {}
    loads, produce, pack, pack2 = orjson.loads, producer.produce, _Q.pack, _QQ.pack

    def commit() -> None:
        for (key, start, partition), count in dirty.items():
            produce(changelog, pack(count), key + pack2(start, start + SIZE_MS), partition)
        dirty.clear()
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)

    t_launch = time.perf_counter()
    consumer.subscribe([inp])
    consumed = commits = 0
    t_first: float | None = None
    in_txn = False
    next_commit = 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while consumed < n and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.1)
        if not msgs:
            continue
        if t_first is None:
            t_first, cpu_first = time.perf_counter(), time.process_time()
            next_commit = time.monotonic() + COMMIT_EVERY_S
        if not in_txn:
            producer.begin_transaction()
            in_txn = True
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(f"raw loop: consumer error {msg.error()}")
            loads(msg.value())  # the same value decoding kstream's JsonSerde does
            key = msg.key()
            ts = msg.timestamp()[1]
            start = ts - ts % SIZE_MS
            window = (key, start)
            count = counts.get(window, 0) + 1
            counts[window] = count
            dirty[(key, start, msg.partition())] = count
            wkey = key + pack2(start, start + SIZE_MS)
            try:
                produce(out, pack(count), wkey, -1, None, None, ts)
            except BufferError:
                producer.poll(0.05)
                produce(out, pack(count), wkey, -1, None, None, ts)
        consumed += len(msgs)
        producer.poll(0)
        if consumed < n and time.monotonic() >= next_commit:
            commit()
            in_txn = False
            commits += 1
            next_commit = time.monotonic() + COMMIT_EVERY_S
    t_last, cpu_last = time.perf_counter(), time.process_time()
    commit()
    t_durable = time.perf_counter()
    consumer.close()
    if consumed < n or t_first is None:
        raise RuntimeError(f"raw loop consumed {consumed}/{n} before the deadline")
    return {"side": "raw", "out": out, "consumed": consumed,
            "rate": consumed / (t_last - t_first), "startup_s": t_first - t_launch,
            "cpu_us": (cpu_last - cpu_first) / consumed * 1e6,
            "tail_s": t_durable - t_last, "commits": commits + 1}


# -- kstream -----------------------------------------------------------------------------------
def build_app(servers: str, inp: str, out: str, state_dir: str, backend: str) -> App:
    b = StreamBuilder()
    (b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
      .group_by_key()
      .windowed_by(TumblingWindows(SIZE_MS))
      .count("counts", backend=backend)
      .to_stream()
      .to(out, value_serde=Int64Serde()))
    return App(b, application_id=unique("bench-win"), bootstrap_servers=servers,
               processing_guarantee="exactly_once", state_dir=state_dir)


def run_kstream(servers: str, inp: str, n: int, partitions: int, backend: str,
                profile: str | None = None) -> dict[str, Any]:
    out = unique("ks-win-out")
    create_topics(servers, [out], partitions)
    with tempfile.TemporaryDirectory(prefix="kstream-bench-") as state_dir:
        app = build_app(servers, inp, out, state_dir, backend)
        run = run_app_timed(app, lambda s: s.get("records_in", 0) >= n
                            and s.get("records_out", 0) >= n, RUN_TIMEOUT_S, profile)
    return {"side": "kstream", "out": out, "consumed": run.stats["records_in"],
            "rate": run.rate, "startup_s": run.t_start - run.t_launch,
            "cpu_us": run.cpu_seconds / run.stats["records_in"] * 1e6,
            "tail_s": run.t_stopped - run.t_done, "commits": run.stats.get("commits", 0)}


def verify(servers: str, result: dict[str, Any], n: int) -> None:
    """Every input record is one update; the latest counts of all windows add up to n."""
    latest: dict[bytes, int] = {}

    def check(key: bytes | None, value: bytes | None) -> None:
        count = _Q.unpack(value)[0]  # type: ignore[arg-type]
        latest[key] = max(latest.get(key, 0), count)  # type: ignore[index]

    result["output_count"] = count_topic(servers, result["out"], n, timeout=120, check=check)
    result["window_total"] = sum(latest.values())
    result["windows"] = len(latest)
    result["output_ok"] = result["output_count"] == n and result["window_total"] == n
    if not result["output_ok"]:
        print(f"!! {result['side']}: {result['output_count']} outputs, window total "
              f"{result['window_total']}, expected {n}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backend", default="rocksdb", choices=("rocksdb", "memory"))
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()
    n = args.records
    with bootstrap() as servers:
        inp = unique("bench-win-in")
        create_topics(servers, [inp], args.partitions)
        secs = produce_orders(servers, inp, n)
        print(f"produced {n:,} records in {secs:.1f}s", flush=True)
        if args.profile:
            r = run_kstream(servers, inp, n, args.partitions, args.backend, args.profile)
            print(f"kstream (profiled): {r['rate']:,.0f} rec/s -> {args.profile}")
            return
        raw_rates, ks_rates, checks = [], [], []
        raw_cpu: list[float] = []
        ks_cpu: list[float] = []
        for rep in range(args.repeat):
            for side in (["raw", "kstream"] if rep % 2 == 0 else ["kstream", "raw"]):
                r = (run_raw(servers, inp, n, args.partitions) if side == "raw"
                     else run_kstream(servers, inp, n, args.partitions, args.backend))
                verify(servers, r, n)
                checks.append(r["output_ok"])
                (raw_rates if side == "raw" else ks_rates).append(r["rate"])
                (raw_cpu if side == "raw" else ks_cpu).append(r["cpu_us"])
                print(f"{side}: {r['rate']:,.0f} rec/s, CPU {r['cpu_us']:.1f} µs/record "
                      f"[startup {r['startup_s']:.1f}s, tail "
                      f"{r['tail_s']:.2f}s, commits {r['commits']}, outputs "
                      f"{r['output_count']:,}, windows {r['windows']:,}]", flush=True)
        raw, ks = median(raw_rates), median(ks_rates)
        print()
        print(f"{datetime.date.today()} · {machine_note()} · {n:,} records, "
              f"{args.partitions} partitions, backend {args.backend}, repeat {args.repeat} "
              f"(medians), peak RSS of this process {peak_rss_mb():.0f} MB")
        rc, kc = median(raw_cpu), median(ks_cpu)
        print("| raw rec/s | kstream rec/s | kstream / raw | CPU µs/record raw / kstream | "
              "ratio by CPU | output |")
        print("|---|---|---|---|---|---|")
        print(f"| {raw:,.0f} | {ks:,.0f} | **{ks / raw:.2f}×** | {rc:.1f} / {kc:.1f} | "
              f"**{rc / kc:.2f}×** | {'ok' if all(checks) else 'MISMATCH'} |")


if __name__ == "__main__":
    main()
