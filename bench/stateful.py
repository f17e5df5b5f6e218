"""Stateful aggregation benchmark: kstream vs a hand-written confluent-kafka loop, exactly-once.

Input: N JSON records {"account": "a<k>", "amount": int} keyed by account (K keys), produced
once. Both sides keep a running {"count", "sum"} per account, write every update to an output
topic and keep a compacted changelog; under exactly-once, one transaction every 100 ms holds
the outputs, the changelog records and the consumed offsets.

kstream, the public DSL as a user writes it:

    b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde()).group_by_key()
     .aggregate(lambda: {"count": 0, "sum": 0},
                lambda k, v, agg: {"count": agg["count"] + 1, "sum": agg["sum"] + v["amount"]},
                "totals", backend=..., emit_on_commit=...)
     .to_stream().to(out, key_serde=StringSerde(), value_serde=JsonSerde())

Raw loop: consume(1000) -> orjson.loads -> dict state per key -> produce the new aggregate;
dirty keys (with their last encoded value) are buffered and written to the changelog (one
record per dirty key, to the input's partition) at each transaction, every 100 ms, with
send_offsets_to_transaction. A second raw variant emits outputs only at the transaction too
(the counterpart of emit_on_commit).

    python bench/stateful.py [--records 500000] [--keys 10000] [--partitions 4] [--repeat 1]
    python bench/stateful.py --rss-keys 1000000    # peak RSS, 1M distinct keys, subprocesses
    python bench/stateful.py --profile /tmp/agg.prof  # cProfile one kstream run (RocksDB)
    python bench/stateful.py --micro               # offline per-record cost breakdown (µs)

CPU = process CPU time (all threads) over the same window, per record; its ratio is raw / kstream.
Throughput = records consumed / (last input record processed - first batch arrived), as in
bench/stateless.py: the group join ("startup") and the final commit/close ("tail") are excluded
and reported. kstream is timed from outside by sampling `app.stats` every 5 ms (default mode:
records_out == N; emit_on_commit: records_in == N, i.e. up to one batch early). Every run is
verified: the last value per key of the output topic and of the changelog, read with
read_committed, must equal the truth computed from the input.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    create_topics,
    create_topics_with_config,
    engine_batches,
    machine_note,
    median,
    peak_rss_mb,
    produce_keyed,
    read_latest,
    run_app_timed,
    unique,
    vm_hwm_mb,
)

from kstream import App, StreamBuilder  # noqa: E402
from serdes import JsonSerde, StringSerde  # noqa: E402

EOS = "exactly_once"
STORE = "totals"
TXN_EVERY_S = 0.1  # kstream's default commit interval under exactly_once
RUN_TIMEOUT_S = 900.0
COMPACTED = {"cleanup.policy": "compact"}
# (backend, emit_on_commit) variants of the kstream run.
KS_VARIANTS = [("rocksdb", False), ("rocksdb", True), ("memory", False), ("memory", True)]


# -- input and truth ---------------------------------------------------------------------------
def amount(i: int) -> int:
    return (i * 7919 + 13) % 1000


def input_records(n: int, keys: int) -> Iterator[tuple[bytes, bytes]]:
    for i in range(n):
        account = f"a{i % keys}"
        yield account.encode(), orjson.dumps({"account": account, "amount": amount(i)})


def truth(n: int, keys: int) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for i in range(n):
        agg = totals.setdefault(f"a{i % keys}", {"count": 0, "sum": 0})
        agg["count"] += 1
        agg["sum"] += amount(i)
    return totals


def check_topic(servers: str, topic: str, expected: dict[str, dict[str, int]]) -> tuple[int, str]:
    """(records read, "ok" or what differs) for the last value per key of `topic`."""
    count, latest = read_latest(servers, topic)
    got = {k.decode(): orjson.loads(v) for k, v in latest.items()
           if k is not None and v is not None}
    if got == expected:
        return count, "ok"
    missing = len(expected.keys() - got.keys())
    wrong = sum(1 for k, v in got.items() if expected.get(k) != v)
    return count, f"MISMATCH ({missing} keys missing, {wrong} wrong of {len(expected)})"


def verify(servers: str, res: dict[str, Any], expected: dict[str, dict[str, int]]) -> None:
    res["output_count"], res["output_check"] = check_topic(servers, res["out"], expected)
    res["changelog_count"], res["changelog_check"] = check_topic(servers, res["changelog"],
                                                                 expected)
    res["ok"] = res["output_check"] == "ok" and res["changelog_check"] == "ok"


# -- raw confluent-kafka loop ------------------------------------------------------------------
def run_raw(servers: str, inp: str, n: int, partitions: int, emit_at_txn: bool = False
            ) -> dict[str, Any]:
    out, changelog = unique("raw-out"), unique("raw-changelog")
    create_topics(servers, [out], partitions)
    create_topics_with_config(servers, [changelog], partitions, COMPACTED)
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "transactional.id": unique("raw-txn"),
                         "transaction.timeout.ms": 10_000})
    producer.init_transactions(30)
    loads, dumps, produce = orjson.loads, orjson.dumps, producer.produce
    state: dict[bytes, dict[str, int]] = {}
    dirty: dict[bytes, tuple[int, bytes]] = {}  # key -> (partition, last encoded aggregate)
    in_txn = False
    changelog_records = 0

    def send(topic: str, value: bytes, key: bytes, partition: int = -1) -> None:
        while True:
            try:
                produce(topic, value, key, partition)
                return
            except BufferError:
                producer.poll(0.05)

    def commit() -> None:
        nonlocal in_txn, dirty, changelog_records
        for key, (partition, value) in dirty.items():
            if emit_at_txn:
                send(out, value, key)
            send(changelog, value, key, partition)
        changelog_records += len(dirty)
        dirty = {}
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        in_txn = False

    t_launch = time.perf_counter()
    consumer.subscribe([inp])
    consumed = commits = 0
    t_first: float | None = None
    next_commit = 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while consumed < n and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.1)
        if not msgs:
            continue
        if t_first is None:
            t_first, cpu_first = time.perf_counter(), time.process_time()
            next_commit = time.monotonic() + TXN_EVERY_S
        if not in_txn:
            producer.begin_transaction()
            in_txn = True
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(f"raw loop: consumer error {msg.error()}")
            key = msg.key()
            v = loads(msg.value())
            agg = state.get(key)  # type: ignore[arg-type]
            if agg is None:
                agg = state[key] = {"count": 0, "sum": 0}  # type: ignore[index]
            agg["count"] += 1
            agg["sum"] += v["amount"]
            value = dumps(agg)
            dirty[key] = (msg.partition(), value)  # type: ignore[index]
            if not emit_at_txn:
                try:
                    produce(out, value, key)
                except BufferError:
                    send(out, value, key)  # type: ignore[arg-type]
        consumed += len(msgs)
        producer.poll(0)
        if consumed < n and time.monotonic() >= next_commit:
            commit()
            commits += 1
            next_commit = time.monotonic() + TXN_EVERY_S
    t_last, cpu_last = time.perf_counter(), time.process_time()
    commit()
    commits += 1
    t_durable = time.perf_counter()
    consumer.close()
    if consumed < n or t_first is None:
        raise RuntimeError(f"raw loop consumed {consumed}/{n} before the deadline")
    return {"side": "raw", "variant": "emit at txn" if emit_at_txn else "emit per update",
            "out": out, "changelog": changelog, "consumed": consumed,
            "rate": consumed / (t_last - t_first), "seconds": t_last - t_first,
            "cpu_us": (cpu_last - cpu_first) / consumed * 1e6,
            "startup_s": t_first - t_launch, "tail_s": t_durable - t_last, "commits": commits,
            "changelog_sent": changelog_records, "state_keys": len(state)}


# -- kstream -----------------------------------------------------------------------------------
def build_app(servers: str, inp: str, out: str, state_dir: str, backend: str,
              emit_on_commit: bool) -> App:
    b = StreamBuilder()
    (b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
      .group_by_key()
      .aggregate(lambda: {"count": 0, "sum": 0},
                 lambda k, v, agg: {"count": agg["count"] + 1, "sum": agg["sum"] + v["amount"]},
                 STORE, backend=backend, emit_on_commit=emit_on_commit)
      .to_stream()
      .to(out, key_serde=StringSerde(), value_serde=JsonSerde()))
    return App(b, application_id=unique("bench-agg"), bootstrap_servers=servers,
               processing_guarantee=EOS, state_dir=state_dir)


def variant_name(backend: str, emit_on_commit: bool) -> str:
    return f"{backend}, {'emit_on_commit' if emit_on_commit else 'emit per update'}"


def run_kstream(servers: str, inp: str, n: int, partitions: int, backend: str = "rocksdb",
                emit_on_commit: bool = False, profile: str | None = None) -> dict[str, Any]:
    out = unique("ks-out")
    create_topics(servers, [out], partitions)
    with tempfile.TemporaryDirectory(prefix="kstream-bench-agg-") as state_dir:
        app = build_app(servers, inp, out, state_dir, backend, emit_on_commit)
        application_id = app.config.application_id
        # With emit_on_commit, outputs are coalesced: the input count is the finish line.
        counter = "records_in" if emit_on_commit else "records_out"
        run = run_app_timed(app, lambda s: s.get(counter, 0) >= n, RUN_TIMEOUT_S, profile)
    stats = run.stats
    return {"side": "kstream", "variant": variant_name(backend, emit_on_commit),
            "backend": backend, "emit_on_commit": emit_on_commit, "out": out,
            "changelog": f"{application_id}-{STORE}-changelog", "consumed": n,
            "rate": n / run.seconds, "seconds": run.seconds,
            "cpu_us": run.cpu_seconds / n * 1e6, "startup_s": run.t_start - run.t_launch,
            "tail_s": run.t_stopped - run.t_done,
            "commits": stats.get("commits"), "aborts": stats.get("aborts"),
            "records_out": stats.get("records_out")}


def kstream_subprocess(servers: str, inp: str, n: int, partitions: int, backend: str,
                       side: str = "kstream") -> dict[str, Any]:
    """Run one side alone in a fresh process, for its peak RSS."""
    cmd = [sys.executable, __file__, "--only", side, "--bootstrap", servers, "--input", inp,
           "--records", str(n), "--partitions", str(partitions), "--backend", backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 120,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{side} subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- offline per-record cost breakdown ---------------------------------------------------------
class NullCollector:
    """A RecordCollector that drops everything (counts calls)."""

    def __init__(self) -> None:
        self.sent = 0
        self.changelog = 0

    def send(self, topic: str, key: Any, value: Any, timestamp: int, headers: Any,
             partition: int = -1) -> None:
        self.sent += 1

    def partition_count(self, topic: str) -> int:
        return 1

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Any) -> None:
        self.changelog += 1


def fetch(servers: str, topic: str, count: int) -> list[Any]:
    """The first `count` messages of `topic` (all partitions) as confluent-kafka Messages."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": unique("bench-fetch"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    from confluent_kafka.admin import AdminClient

    parts = AdminClient({"bootstrap.servers": servers}).list_topics(
        topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    msgs: list[Any] = []
    deadline = time.monotonic() + 60
    while len(msgs) < count and time.monotonic() < deadline:
        msgs.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
    consumer.close()
    return msgs[:count]


def micro(servers: str, inp: str, count: int, commit_every: int) -> list[tuple[str, float]]:
    """µs per input record of the pieces of the aggregation path, GC off, best of 5."""
    from kstream.runtime.task import build_task

    msgs = fetch(servers, inp, count)
    n = len(msgs)
    rows: list[tuple[str, float]] = []
    gc.collect()
    gc.disable()

    def t(fn: Any, reps: int = 5) -> float:
        best = float("inf")
        for _ in range(reps):
            started = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - started)
        return best / n * 1e6

    loads, dumps = orjson.loads, orjson.dumps
    sink: list[Any] = []
    discard = sink.append

    def raw_work() -> None:
        state: dict[bytes, dict[str, int]] = {}
        dirty: dict[bytes, tuple[int, bytes]] = {}
        for i, msg in enumerate(msgs):
            key = msg.key()
            v = loads(msg.value())
            agg = state.get(key)
            if agg is None:
                agg = state[key] = {"count": 0, "sum": 0}
            agg["count"] += 1
            agg["sum"] += v["amount"]
            value = dumps(agg)
            dirty[key] = (msg.partition(), value)
            if i % commit_every == 0:
                for k, (p, val) in dirty.items():
                    discard((k, p, val))
                dirty = {}
        sink.clear()

    rows.append((f"RAW loop body (loads, dict update, dumps, dirty map; changelog flush every "
                 f"{commit_every}; no produce)", t(raw_work)))

    tasks: dict[str, Any] = {}
    keys = [str(m.key(), "utf-8") for m in msgs]
    aggs = [{"count": i, "sum": i * 3} for i in range(n)]
    for backend, emit in KS_VARIANTS:
        app = build_app(servers, inp, "bench-null-out", "/nonexistent", backend, emit)
        topology = app.topology.bind(app.config.application_id)
        sub = topology.subtopologies()[0]
        collector = NullCollector()
        root = Path(tempfile.mkdtemp(prefix="kstream-bench-micro-"))
        by_partition = {p: build_task(app.config.application_id, topology, sub, p, collector,
                                      root) for p in {m.partition() for m in msgs}}
        task = by_partition[min(by_partition)]
        tasks[variant_name(backend, emit)] = task

        def ks_work(by_partition: dict[int, Any] = by_partition) -> None:
            def commit() -> None:
                for task in by_partition.values():
                    task.prepare_commit()
                    task.after_commit()

            # commit_every is a multiple of the batch size (1000): a commit after such batches.
            engine_batches(by_partition, inp, msgs,
                           after_batch=lambda done: commit() if done % commit_every == 0
                           else None)
            commit()

        rows.append((f"KSTREAM task handler, {variant_name(backend, emit)}, commit every "
                     f"{commit_every} (null collector)", t(ks_work)))

        if not emit:
            # The commit share: same writes buffered, then only commits timed.
            store = task.stores[STORE]

            def puts_then_commits(store: Any = store, task: Any = task) -> float:
                spent = 0.0
                for i in range(n):
                    store.put(keys[i], aggs[i])
                    if i % commit_every == 0:
                        started = time.perf_counter()
                        task.prepare_commit()
                        task.after_commit()
                        spent += time.perf_counter() - started
                return spent

            best = min(puts_then_commits() for _ in range(3))
            rows.append((f"  of which commits (prepare_commit + after_commit: changelog send "
                         f"+ backend write), {backend}", best / n * 1e6))
            get = store.get
            put = store.put
            rows.append((f"  store.get(key) hit, value in {backend} backend (buffer empty)",
                         t(lambda get=get: [get(k) for k in keys])))
            rows.append((f"  store.put(key, aggregate) into the write buffer, {backend}",
                         t(lambda put=put: [put(k, a) for k, a in zip(keys, aggs, strict=True)])))
            rows.append((f"  store.get(key) hit, value in the write buffer, {backend}",
                         t(lambda get=get: [get(k) for k in keys])))
            task.prepare_commit()
            task.after_commit()

    # Pieces shared by every variant.
    key_bytes = [m.key() for m in msgs]
    agg_bytes = [dumps({"count": i, "sum": i * 3}) for i in range(n)]
    jser, sser = JsonSerde(), StringSerde()
    rows.append(("  JsonSerde.deserialize(aggregate) vs orjson.loads",
                 t(lambda: [jser.deserialize(b, None) for b in agg_bytes])))
    rows.append(("  bare orjson.loads(aggregate)", t(lambda: [loads(b) for b in agg_bytes])))
    rows.append(("  StringSerde ser+de of the key (store key, twice per record: get and put)",
                 t(lambda: [sser.serialize(sser.deserialize(b, None), None)
                            for b in key_bytes])))
    adder = lambda k, v, agg: {"count": agg["count"] + 1, "sum": agg["sum"] + v["amount"]}  # noqa: E731
    vals = [{"amount": 5}] * n
    aggs0 = [{"count": 1, "sum": 2}] * n
    rows.append(("  the user's adder lambda (new dict)",
                 t(lambda: [adder(None, v, a) for v, a in zip(vals, aggs0, strict=True)])))
    from kstream.dsl._change import Change
    from kstream.record import Record

    task = tasks[variant_name("memory", False)]
    agg_node = next(p for p in task._processors.values() if type(p).__name__ == "AggregateOp")
    down = agg_node._down  # an aggregation forwards Change(old, new) to to_stream()
    recs = [Record("a1", Change(None, {"count": 1, "sum": 2}), 1, None, inp, 0, i)
            for i in range(n)]
    rows.append(("  downstream of the aggregate: PassThroughOp -> SinkOp (serdes) -> "
                 "collector.send (null)", t(lambda: [down(r) for r in recs])))
    gc.enable()
    for task in tasks.values():
        task.close()
    return rows


# -- driver ------------------------------------------------------------------------------------
def fmt_table(raw: dict[str, list[float]], ks: dict[str, list[float]],
              checks: dict[str, list[bool]], startup: dict[str, list[float]],
              tail: dict[str, list[float]], cpu: dict[str, list[float]]) -> str:
    base = median(raw["emit per update"])
    base_cpu = median(cpu["raw:emit per update"])
    lines = ["| side | variant | rec/s (median) | runs | ratio vs raw (emit per update) | "
             "CPU µs/record (median) | ratio by CPU | startup / tail (s) | "
             "output + changelog check |", "|" + "---|" * 9]
    for side, group in (("raw", raw), ("kstream", ks)):
        for name, rates in group.items():
            key = f"{side}:{name}"
            ok = "ok" if checks[key] and all(checks[key]) else "MISMATCH"
            lines.append(
                f"| {side} | {name} | {median(rates):,.0f} | "
                f"{' / '.join(f'{r:,.0f}' for r in rates)} | {median(rates) / base:.2f}x | "
                f"{median(cpu[key]):.1f} | {base_cpu / median(cpu[key]):.2f}x | "
                f"{median(startup[key]):.1f} / {median(tail[key]):.2f} | {ok} |")
    return "\n".join(lines)


def print_profile(path: str) -> None:
    buf = io.StringIO()
    stats = pstats.Stats(path, stream=buf)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(r"kstream/(state|dsl|runtime)", 30)
    print(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--variants", default="all",
                        help="comma list of kstream variants, e.g. rocksdb,rocksdb-eoc,memory,"
                             "memory-eoc (default all)")
    parser.add_argument("--rss-keys", type=int, default=0,
                        help="instead: peak RSS of kstream (RocksDB and memory) and of the raw "
                             "loop aggregating this many distinct keys, one subprocess each")
    parser.add_argument("--only", choices=("kstream", "raw"), help="internal: one side alone")
    parser.add_argument("--backend", default="rocksdb", help="internal: backend for --only")
    parser.add_argument("--bootstrap", help="broker to use (else KSTREAM_BOOTSTRAP_SERVERS or "
                                            "a LocalBroker)")
    parser.add_argument("--input", help="internal: existing input topic")
    parser.add_argument("--profile", metavar="PATH", help="cProfile one kstream run into PATH")
    parser.add_argument("--micro", action="store_true",
                        help="offline per-record cost breakdown of the aggregation path")
    parser.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    args = parser.parse_args()
    n = args.records

    if args.only:
        if args.only == "kstream":
            res = run_kstream(args.bootstrap, args.input, n, args.partitions, args.backend)
        else:
            res = run_raw(args.bootstrap, args.input, n, args.partitions)
        res["peak_rss_mb"] = peak_rss_mb()  # before anything is read back
        res["vm_hwm_mb"] = vm_hwm_mb()  # this image's own peak (ru_maxrss includes the parent's)
        print(json.dumps(res))
        return

    if args.bootstrap:
        os.environ["KSTREAM_BOOTSTRAP_SERVERS"] = args.bootstrap
    with bootstrap() as servers:
        if args.rss_keys:
            rss_mode(servers, args.rss_keys, args.partitions)
            return
        inp = unique("accounts")
        create_topics(servers, [inp], args.partitions)
        took = produce_keyed(servers, inp, input_records(n, args.keys))
        print(f"input: {n:,} records, {args.keys:,} keys -> {inp} ({args.partitions} "
              f"partitions) in {took:.1f}s", flush=True)
        if args.micro:
            rows = micro(servers, inp, min(n, 100_000), commit_every=2_000)
            print("\n| piece | µs/record |\n|---|---|")
            for name, us in rows:
                print(f"| {name} | {us:.2f} |")
            return
        expected = truth(n, args.keys)
        if args.profile:
            res = run_kstream(servers, inp, n, args.partitions, profile=args.profile)
            verify(servers, res, expected)
            print(f"kstream rocksdb under cProfile: {res['rate']:,.0f} rec/s, "
                  f"check {res['output_check']}/{res['changelog_check']}")
            print_profile(args.profile)
            return
        bench(servers, inp, n, args, expected)


def bench(servers: str, inp: str, n: int, args: argparse.Namespace,
          expected: dict[str, dict[str, int]]) -> None:
    names = {"rocksdb": ("rocksdb", False), "rocksdb-eoc": ("rocksdb", True),
             "memory": ("memory", False), "memory-eoc": ("memory", True)}
    variants = (KS_VARIANTS if args.variants == "all"
                else [names[v.strip()] for v in args.variants.split(",")])
    raw: dict[str, list[float]] = {"emit per update": [], "emit at txn": []}
    ks: dict[str, list[float]] = {variant_name(*v): [] for v in variants}
    checks: dict[str, list[bool]] = {}
    startup: dict[str, list[float]] = {}
    tail: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    results: list[dict[str, Any]] = []

    def record(res: dict[str, Any]) -> None:
        verify(servers, res, expected)
        key = f"{res['side']}:{res['variant']}"
        checks.setdefault(key, []).append(res["ok"])
        startup.setdefault(key, []).append(res["startup_s"])
        tail.setdefault(key, []).append(res["tail_s"])
        cpu.setdefault(key, []).append(res["cpu_us"])
        (raw if res["side"] == "raw" else ks)[res["variant"]].append(res["rate"])
        results.append(res)
        print(f"{res['side']} ({res['variant']}): {res['rate']:,.0f} rec/s, CPU "
              f"{res['cpu_us']:.1f} µs/record [startup "
              f"{res['startup_s']:.1f}s, tail {res['tail_s']:.2f}s, commits {res['commits']}, "
              f"output {res['output_count']:,} {res['output_check']}, changelog "
              f"{res['changelog_count']:,} {res['changelog_check']}]", flush=True)

    for rep in range(args.repeat):
        order = ["raw", "kstream"] if rep % 2 == 0 else ["kstream", "raw"]
        for side in order:
            if side == "raw":
                record(run_raw(servers, inp, n, args.partitions))
                record(run_raw(servers, inp, n, args.partitions, emit_at_txn=True))
            else:
                for backend, emit in (variants if rep % 2 == 0 else variants[::-1]):
                    record(run_kstream(servers, inp, n, args.partitions, backend, emit))
    print()
    print(f"{datetime.date.today()} · {machine_note()} · {n:,} records, {args.keys:,} keys, "
          f"{args.partitions} partitions, exactly_once, repeat {args.repeat} (medians)")
    print(fmt_table(raw, ks, checks, startup, tail, cpu))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results}, indent=1))


def rss_mode(servers: str, keys: int, partitions: int) -> None:
    """Every record a new key: the state grows to `keys` entries."""
    inp = unique("accounts-rss")
    create_topics(servers, [inp], partitions)
    took = produce_keyed(servers, inp, input_records(keys, keys))
    print(f"input: {keys:,} records, {keys:,} distinct keys -> {inp} in {took:.1f}s", flush=True)
    expected = truth(keys, keys)
    print("| side | backend | rec/s | peak RSS (ru_maxrss) | own peak (VmHWM) | "
          "output + changelog check |")
    print("|---|---|---|---|---|---|")
    for side, backend in (("kstream", "rocksdb"), ("kstream", "memory"), ("raw", "dict")):
        res = kstream_subprocess(servers, inp, keys, partitions, backend, side)
        verify(servers, res, expected)
        ok = "ok" if res["ok"] else f"{res['output_check']} / {res['changelog_check']}"
        print(f"| {side} | {backend} | {res['rate']:,.0f} | {res['peak_rss_mb']:.0f} MB | "
              f"{res['vm_hwm_mb']:.0f} MB | {ok} |", flush=True)


if __name__ == "__main__":
    main()
