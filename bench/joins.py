"""Stream-stream join benchmark: kstream vs a hand-written confluent-kafka loop, exactly-once.

Input: two topics of N JSON records each ({"id": i}, ~10 bytes), keyed by `k<i % K>`
(K keys). Left record i has time T0 + i * 100 ms, right record i 30 s later, so with a
5-minute window each left record joins exactly one right record (a key recurs every
K * 100 ms = 16.7 min for K = 10k): N results.

Both sides: inner join on a 5-minute symmetric window, grace 24 h, every result
[left id, right id] to an output topic, both sides' buffered records to changelog topics (and
a tombstone when they expire after window + grace), one transaction every 100 ms with the
consumed offsets. Why such a grace: records are processed in the order the consumer returns
them, and with two pre-filled topics librdkafka returns most of one topic before the other
(measured: up to 8-14 h of record time apart for 2 x 500k records, whatever the fetch sizes),
so anything shorter than the whole input's 14 h span would drop records as late on both
sides. The window stores therefore hold the whole input in this run (expiry is not
exercised: tests/joins covers it).

kstream, as a user writes it:

    left.join(right, lambda l, r: [l["id"], r["id"]], JoinWindows.of(300_000, grace=7_200_000),
              "bench-join").to(out, StringSerde(), JsonSerde())

Raw loop: consume(1000) -> orjson.loads -> per partition and key, a dict of lists of
(time, value) per side -> scan the other side's list for partners -> produce
orjson.dumps([l["id"], r["id"]]); the record's original bytes to the side's changelog at the
next transaction; entries older than window + grace pruned (tombstones) as their key is
touched.

Each side runs in its own fresh process (`--only`), so peak RSS (ru_maxrss) is its own.
Throughput = 2N input records / (last result produced - first batch consumed); group join and
the final commit are excluded. Every run's output is read back read_committed and must hold
exactly the N expected pairs.

    python bench/joins.py [--records 500000] [--keys 10000] [--partitions 4] [--repeat 1]
                          [--backend rocksdb|memory] [--profile PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    count_topic,
    create_topics,
    create_topics_with_config,
    machine_note,
    median,
    peak_rss_mb,
    run_app_timed,
    unique,
)

from kstream import App, JoinWindows, StreamBuilder  # noqa: E402
from serdes import JsonSerde, StringSerde  # noqa: E402

WINDOW_MS = 5 * 60_000
GRACE_MS = 24 * 3_600_000
STEP_MS = 100
RIGHT_LAG_MS = 30_000
RUN_TIMEOUT_S = 1800.0
COMMIT_EVERY_S = 0.1
_TS = (1 << 63)


# -- input and truth ---------------------------------------------------------------------------
def t0() -> int:
    """Recent record times: the broker's time-based retention would drop old ones."""
    return (int(time.time()) - 3 * 86_400) * 1000


def records(n: int, keys: int, start: int, lag: int) -> Iterator[tuple[bytes, bytes, int]]:
    for i in range(n):
        yield f"k{i % keys}".encode(), orjson.dumps({"id": i}), start + i * STEP_MS + lag


def produce_timed(servers: str, topic: str, rows: Iterator[tuple[bytes, bytes, int]]) -> None:
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20,
                         "batch.num.messages": 10000, "batch.size": 1_000_000,
                         "enable.idempotence": True, "partitioner": "murmur2_random"})
    for key, value, ts in rows:
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError(f"producing the input to {topic} did not finish")


# -- raw confluent-kafka loop ------------------------------------------------------------------
def run_raw(servers: str, left: str, right: str, n: int, partitions: int) -> dict[str, Any]:
    """The same join by hand: per (partition, key) lists of (time, value) per side."""
    out = unique("raw-join-out")
    changelogs = (unique("raw-join-left-changelog"), unique("raw-join-right-changelog"))
    create_topics(servers, [out], partitions)
    create_topics_with_config(servers, list(changelogs), partitions,
                              {"cleanup.policy": "compact"})
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-join-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "transactional.id": unique("raw-join-txn"),
                         "transaction.timeout.ms": 10_000})
    producer.init_transactions(30)
    retention = 2 * WINDOW_MS + GRACE_MS
    # buffers[side][(partition, key)] = [(ts, value, changelog key), ...]
    buffers: tuple[dict[Any, list[Any]], dict[Any, list[Any]]] = ({}, {})
    dirty: list[tuple[str, bytes, bytes | None, int]] = []
    stream_time: dict[int, int] = {}
    loads, dumps, produce = orjson.loads, orjson.dumps, producer.produce
    side_of = {left: 0, right: 1}
    late = 0

    def commit() -> None:
        for topic, ckey, value, partition in dirty:
            try:
                produce(topic, value, ckey, partition)
            except BufferError:
                producer.poll(0.05)
                produce(topic, value, ckey, partition)
        dirty.clear()
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)

    t_launch = time.perf_counter()
    consumer.subscribe([left, right])
    consumed = results = commits = 0
    t_first: float | None = None
    in_txn = False
    next_commit = 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while results < n and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.1)
        if not msgs:
            continue
        if t_first is None:
            t_first = time.perf_counter()
            next_commit = time.monotonic() + COMMIT_EVERY_S
        if not in_txn:
            producer.begin_transaction()
            in_txn = True
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(f"raw loop: consumer error {msg.error()}")
            raw_value = msg.value()
            value = loads(raw_value)
            key, partition, ts = msg.key(), msg.partition(), msg.timestamp()[1]
            st = stream_time.get(partition, -1)
            if ts > st:
                st = stream_time[partition] = ts
            if ts < st - GRACE_MS:
                late += 1
                continue
            side = side_of[msg.topic()]
            bucket = (partition, key)
            mine = buffers[side].setdefault(bucket, [])
            if mine and mine[0][0] < st - retention:  # expire this key's old entries
                keep = [e for e in mine if e[0] >= st - retention]
                for e in mine[:len(mine) - len(keep)]:
                    dirty.append((changelogs[side], e[2], None, partition))
                mine[:] = keep
            ckey = key + (ts + _TS).to_bytes(8, "big") + msg.offset().to_bytes(8, "big")
            mine.append((ts, value, ckey))
            dirty.append((changelogs[side], ckey, raw_value, partition))
            lo, hi = ts - WINDOW_MS, ts + WINDOW_MS
            for ots, ovalue, _ in buffers[1 - side].get(bucket, ()):
                if lo <= ots <= hi:
                    pair = [value["id"], ovalue["id"]] if side == 0 else [ovalue["id"],
                                                                          value["id"]]
                    out_ts = ts if ts > ots else ots
                    try:
                        produce(out, dumps(pair), key, -1, None, None, out_ts)
                    except BufferError:
                        producer.poll(0.05)
                        produce(out, dumps(pair), key, -1, None, None, out_ts)
                    results += 1
        consumed += len(msgs)
        producer.poll(0)
        if results < n and time.monotonic() >= next_commit:
            commit()
            in_txn = False
            commits += 1
            next_commit = time.monotonic() + COMMIT_EVERY_S
    t_last = time.perf_counter()
    commit()
    t_durable = time.perf_counter()
    consumer.close()
    if results < n or t_first is None:
        raise RuntimeError(f"raw loop produced {results}/{n} results before the deadline "
                           f"({late} late)")
    return {"side": "raw", "out": out, "consumed": consumed, "late": late,
            "rate": 2 * n / (t_last - t_first), "startup_s": t_first - t_launch,
            "tail_s": t_durable - t_last, "commits": commits + 1}


# -- kstream -----------------------------------------------------------------------------------
def build_app(servers: str, left: str, right: str, out: str, state_dir: str,
              backend: str) -> App:
    b = StreamBuilder()
    lhs = b.stream(left, key_serde=StringSerde(), value_serde=JsonSerde())
    rhs = b.stream(right, key_serde=StringSerde(), value_serde=JsonSerde())
    (lhs.join(rhs, lambda lv, rv: [lv["id"], rv["id"]],
              JoinWindows.of(WINDOW_MS, grace=GRACE_MS), "bench-join", backend=backend)
     .to(out, StringSerde(), JsonSerde()))
    return App(b, application_id=unique("bench-join"), bootstrap_servers=servers,
               processing_guarantee="exactly_once", state_dir=state_dir)


def run_kstream(servers: str, left: str, right: str, n: int, partitions: int, backend: str,
                profile: str | None = None) -> dict[str, Any]:
    out = unique("ks-join-out")
    create_topics(servers, [out], partitions)
    with tempfile.TemporaryDirectory(prefix="kstream-bench-") as state_dir:
        app = build_app(servers, left, right, out, state_dir, backend)
        # Done at the N-th result, or once all input is in (at most a batch early; if
        # results are missing, verify() reports it instead of waiting for the deadline).
        run = run_app_timed(app, lambda s: s.get("records_out", 0) >= n
                            or s.get("records_in", 0) >= 2 * n, RUN_TIMEOUT_S, profile)
    return {"side": "kstream", "out": out, "consumed": run.stats["records_in"],
            "rate": 2 * n / run.seconds, "startup_s": run.t_start - run.t_launch,
            "tail_s": run.t_stopped - run.t_done, "commits": run.stats.get("commits", 0),
            "late": run.stats.get("late_records")}


def verify(servers: str, result: dict[str, Any], n: int) -> None:
    """Exactly the pairs [i, i] (left i joins right i), each once."""
    seen: set[int] = set()
    bad: list[Any] = []

    def check(_key: bytes | None, value: bytes | None) -> None:
        pair = orjson.loads(value)  # type: ignore[arg-type]
        if pair[0] != pair[1] or pair[0] in seen:
            bad.append(pair)
        seen.add(pair[0])

    result["output_count"] = count_topic(servers, result["out"], n, timeout=300, check=check)
    result["output_ok"] = result["output_count"] == n and not bad and len(seen) == n
    if not result["output_ok"]:
        print(f"!! {result['side']}: {result['output_count']} outputs, {len(seen)} distinct, "
              f"bad {bad[:5]}, expected {n}", file=sys.stderr)


def subprocess_run(servers: str, left: str, right: str, n: int, partitions: int, side: str,
                   backend: str) -> dict[str, Any]:
    """One side alone in a fresh process, for its own peak RSS."""
    cmd = [sys.executable, __file__, "--only", side, "--bootstrap", servers, "--left", left,
           "--right", right, "--records", str(n), "--partitions", str(partitions),
           "--backend", backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 300,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000, help="per input topic")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--backend", default="rocksdb", choices=("rocksdb", "memory"))
    parser.add_argument("--profile", default=None, help="cProfile one kstream run (in-process)")
    parser.add_argument("--only", choices=("kstream", "raw"), help="internal: one side alone")
    parser.add_argument("--bootstrap", help="broker (else KSTREAM_BOOTSTRAP_SERVERS or a "
                                            "LocalBroker)")
    parser.add_argument("--left", help="internal: existing left input topic")
    parser.add_argument("--right", help="internal: existing right input topic")
    args = parser.parse_args()
    n = args.records
    if args.only:
        if args.only == "kstream":
            res = run_kstream(args.bootstrap, args.left, args.right, n, args.partitions,
                              args.backend)
        else:
            res = run_raw(args.bootstrap, args.left, args.right, n, args.partitions)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return
    if args.bootstrap:
        os.environ["KSTREAM_BOOTSTRAP_SERVERS"] = args.bootstrap
    with bootstrap() as servers:
        left, right = unique("bench-join-left"), unique("bench-join-right")
        create_topics(servers, [left, right], args.partitions)
        started = time.perf_counter()
        start = t0()
        produce_timed(servers, left, records(n, args.keys, start, 0))
        produce_timed(servers, right, records(n, args.keys, start, RIGHT_LAG_MS))
        print(f"produced 2 x {n:,} records ({args.keys:,} keys) in "
              f"{time.perf_counter() - started:.1f}s", flush=True)
        if args.profile:
            r = run_kstream(servers, left, right, n, args.partitions, args.backend,
                            args.profile)
            verify(servers, r, n)
            print(f"kstream (profiled): {r['rate']:,.0f} rec/s -> {args.profile}")
            return
        rates: dict[str, list[float]] = {"raw": [], "kstream": []}
        rss: dict[str, list[float]] = {"raw": [], "kstream": []}
        checks = []
        for rep in range(args.repeat):
            for side in (["raw", "kstream"] if rep % 2 == 0 else ["kstream", "raw"]):
                r = subprocess_run(servers, left, right, n, args.partitions, side, args.backend)
                verify(servers, r, n)
                checks.append(r["output_ok"])
                rates[side].append(r["rate"])
                rss[side].append(r["peak_rss_mb"])
                print(f"{side}: {r['rate']:,.0f} rec/s, peak RSS {r['peak_rss_mb']:.0f} MB "
                      f"[startup {r['startup_s']:.1f}s, tail {r['tail_s']:.2f}s, commits "
                      f"{r['commits']}, results {r['output_count']:,}, late {r['late']}]",
                      flush=True)
        raw, ks = median(rates["raw"]), median(rates["kstream"])
        print()
        print(f"{datetime.date.today()} · {machine_note()} · 2 x {n:,} records, "
              f"{args.keys:,} keys, {args.partitions} partitions, backend {args.backend}, "
              f"exactly_once, repeat {args.repeat} (medians)")
        print("| side | rec/s | peak RSS | kstream / raw | output |")
        print("|---|---|---|---|---|")
        ok = "ok" if all(checks) else "MISMATCH"
        print(f"| raw | {raw:,.0f} | {median(rss['raw']):.0f} MB | 1.00× | {ok} |")
        print(f"| kstream ({args.backend}) | {ks:,.0f} | {median(rss['kstream']):.0f} MB | "
              f"**{ks / raw:.2f}×** | {ok} |")


if __name__ == "__main__":
    main()
