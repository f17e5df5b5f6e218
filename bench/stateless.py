"""Stateless pipeline benchmark: kstream vs a hand-written confluent-kafka loop.

Pipeline (both sides): JSON orders -> filter amount >= 100 -> map to
{"id", "user", "amount_cents"} -> JSON -> output topic, key passed through.

    python bench/stateless.py [--records 500000] [--partitions 4]
                              [--guarantee exactly_once|at_least_once|both] [--repeat 1]
    python bench/stateless.py --profile /tmp/ks.prof --guarantee exactly_once   # cProfile
    python bench/stateless.py --micro        # offline per-record cost breakdown (µs/record)

Throughput of a run = records consumed / (time the last input record was processed - time
the first batch arrived); the consumer-group join before the first batch is excluded and
reported separately ("startup"), as is the final commit/shutdown ("tail"). kstream is timed
from outside by sampling `app.stats` every 5 ms; the raw loop timestamps itself.
Peak RSS of kstream is measured in a separate subprocess (`--only kstream`) that runs only
kstream; the < 300 MB target is about that figure.
"""

from __future__ import annotations

import argparse
import collections
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
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    count_topic,
    create_topics,
    engine_batches,
    machine_note,
    median,
    peak_rss_mb,
    produce_orders,
    run_app_timed,
    unique,
)

from kstream import App, StreamBuilder  # noqa: E402
from serdes import JsonSerde, StringSerde  # noqa: E402

EOS, ALOS = "exactly_once", "at_least_once"
MIN_AMOUNT = 100
RUN_TIMEOUT_S = 600.0
# Commit cadence of the raw loop, per guarantee: 0 = after every consumed batch.
# EOS: one transaction per batch (the loop) and every 100 ms (kstream's default
# commit_interval under exactly_once). ALOS: flush + sync commit every 1 s (kstream's
# default); flushing after every 1000-record batch would stall on linger + a round trip.
RAW_VARIANTS = {EOS: (0.0, 0.1), ALOS: (1.0,)}


def passing(n: int) -> int:
    """How many of ids 0..n-1 pass the filter (amount = id % 500)."""
    full, rest = divmod(n, 500)
    return full * (500 - MIN_AMOUNT) + max(0, rest - MIN_AMOUNT)


def transform(v: dict[str, Any]) -> dict[str, Any]:
    return {"id": v["id"], "user": v["user"], "amount_cents": v["amount"] * 100}


def check_output(key: bytes | None, value: bytes | None) -> None:
    v = orjson.loads(value)  # type: ignore[arg-type]
    i = v["id"]
    if (v["amount_cents"] != (i % 500) * 100 or i % 500 < MIN_AMOUNT
            or key != f"u{i % 1000}".encode() or v["user"] != f"u{i % 1000}"):
        raise AssertionError(f"wrong output record {key!r} {value!r}")


# -- raw confluent-kafka loop ------------------------------------------------------------------
def run_raw(servers: str, inp: str, n: int, partitions: int, guarantee: str,
            commit_every_s: float) -> dict[str, Any]:
    out = unique("raw-out")
    create_topics(servers, [out], partitions)
    eos = guarantee == EOS
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed" if eos else "read_uncommitted",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
    errors: list[KafkaError] = []
    pconf: dict[str, Any] = {"bootstrap.servers": servers, "linger.ms": 5,
                             "partitioner": "murmur2_random", "enable.idempotence": True}
    if eos:
        pconf.update({"transactional.id": unique("raw-txn"), "transaction.timeout.ms": 10_000})
    else:
        # Delivery failures must block the offset commit; only failures need a callback.
        pconf.update({"delivery.report.only.error": True,
                      "on_delivery": lambda err, _m: errors.append(err)})
    producer = Producer(pconf)
    if eos:
        producer.init_transactions(30)
    loads, dumps, produce = orjson.loads, orjson.dumps, producer.produce
    in_txn = False

    def commit() -> None:
        nonlocal in_txn
        positions = consumer.position(consumer.assignment())
        if eos:
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                                 30)
            producer.commit_transaction(30)
            in_txn = False
        else:
            if producer.flush(30) or errors:
                raise RuntimeError(f"raw loop: deliveries failed {errors[:3]}")
            consumer.commit(offsets=positions, asynchronous=False)

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
            next_commit = time.monotonic() + commit_every_s
        if eos and not in_txn:
            producer.begin_transaction()
            in_txn = True
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(f"raw loop: consumer error {msg.error()}")
            v = loads(msg.value())
            if v["amount"] >= MIN_AMOUNT:
                value = dumps({"id": v["id"], "user": v["user"],
                               "amount_cents": v["amount"] * 100})
                try:
                    produce(out, value, msg.key())
                except BufferError:
                    producer.poll(0.05)
                    produce(out, value, msg.key())
        consumed += len(msgs)
        producer.poll(0)
        if consumed < n and time.monotonic() >= next_commit:
            commit()
            commits += 1
            next_commit = time.monotonic() + commit_every_s
    t_last, cpu_last = time.perf_counter(), time.process_time()
    commit()
    commits += 1
    t_durable = time.perf_counter()
    consumer.close()
    if consumed < n or t_first is None:
        raise RuntimeError(f"raw loop consumed {consumed}/{n} before the deadline")
    return {"side": "raw", "guarantee": guarantee, "commit_every_s": commit_every_s,
            "out": out, "consumed": consumed, "rate": consumed / (t_last - t_first),
            "seconds": t_last - t_first, "startup_s": t_first - t_launch,
            "cpu_us": (cpu_last - cpu_first) / consumed * 1e6,
            "tail_s": t_durable - t_last, "commits": commits}


# -- kstream -----------------------------------------------------------------------------------
def build_app(servers: str, inp: str, out: str, guarantee: str, state_dir: str) -> App:
    b = StreamBuilder()
    (b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
      .filter(lambda k, v: v["amount"] >= MIN_AMOUNT)
      .map_values(lambda v: {"id": v["id"], "user": v["user"], "amount_cents": v["amount"] * 100})
      .to(out, value_serde=JsonSerde()))
    return App(b, application_id=unique("bench-ks"), bootstrap_servers=servers,
               processing_guarantee=guarantee, state_dir=state_dir)


def run_kstream(servers: str, inp: str, n: int, partitions: int, guarantee: str,
                profile: str | None = None) -> dict[str, Any]:
    out = unique("ks-out")
    create_topics(servers, [out], partitions)
    expected = passing(n)
    with tempfile.TemporaryDirectory(prefix="kstream-bench-") as state_dir:
        app = build_app(servers, inp, out, guarantee, state_dir)
        run = run_app_timed(app, lambda s: s.get("records_in", 0) >= n
                            and s.get("records_out", 0) >= expected, RUN_TIMEOUT_S, profile)
    return {"side": "kstream", "guarantee": guarantee, "out": out,
            "consumed": run.stats["records_in"], "rate": run.rate, "seconds": run.seconds,
            "cpu_us": run.cpu_seconds / run.stats["records_in"] * 1e6,
            "startup_s": run.t_start - run.t_launch, "tail_s": run.t_stopped - run.t_done,
            "commits": run.stats.get("commits", 0), "records_out": run.stats["records_out"]}


def verify(servers: str, result: dict[str, Any], n: int) -> None:
    expected = passing(n)
    count = count_topic(servers, result["out"], expected, timeout=120, check=check_output)
    result["output_count"] = count
    result["output_ok"] = count == expected
    if count != expected:
        print(f"!! {result['side']} {result['guarantee']}: {count} output records, "
              f"expected {expected}", file=sys.stderr)


def kstream_subprocess(servers: str, inp: str, n: int, partitions: int,
                       guarantee: str) -> dict[str, Any]:
    """Run kstream alone in a fresh interpreter: its peak RSS is the figure the target is about."""
    cmd = [sys.executable, __file__, "--only", "kstream", "--bootstrap", servers,
           "--input", inp, "--records", str(n), "--partitions", str(partitions),
           "--guarantee", guarantee]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"kstream subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- offline per-record cost breakdown ---------------------------------------------------------
def micro(servers: str, inp: str, n: int) -> list[tuple[str, float]]:
    """µs per record of the pieces of kstream's hot path, on real confluent-kafka Messages."""
    from kstream.runtime.stats import EngineStats
    from kstream.runtime.task import build_task

    consumer = Consumer({"bootstrap.servers": servers, "group.id": unique("micro"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([inp])
    msgs: list[Any] = []
    deadline = time.monotonic() + 60
    while len(msgs) < n and time.monotonic() < deadline:
        msgs.extend(m for m in consumer.consume(1000, 0.5) if m.error() is None)
    consumer.close()
    msgs = msgs[:n]
    count = len(msgs)

    class NullCollector:
        def __init__(self) -> None:
            self.sent = 0

        def send(self, topic, key, value, timestamp, headers, partition=-1):  # noqa: ANN001
            self.sent += 1

        def partition_count(self, topic: str) -> int:
            return 1

        def send_changelog(self, *a: Any) -> None:
            pass

    with tempfile.TemporaryDirectory() as state_dir:
        app = build_app(servers, inp, "sink", EOS, state_dir)
        topo = app.topology
        sub = topo.subtopologies()[0]
        tasks = {p: build_task("micro", topo, sub, p, NullCollector(),  # type: ignore[arg-type]
                               Path(state_dir)) for p in {m.partition() for m in msgs}}
    task = next(iter(tasks.values()))
    out = unique("micro-out")
    create_topics(servers, [out], 4)
    loads, dumps = orjson.loads, orjson.dumps
    values = [loads(m.value()) for m in msgs]
    passing_values = [v for v in values if v["amount"] >= MIN_AMOUNT]
    out_values = [dumps(transform(v)) for v in passing_values]
    keys = [m.key() for m in msgs]
    out_keys = [f"u{v['id'] % 1000}".encode() for v in passing_values]
    str_serde, json_serde = StringSerde(), JsonSerde()
    from serdes import SerdeContext

    ctx = SerdeContext()
    from kstream.record import Record

    def t(fn: Any) -> float:
        best = float("inf")
        for _ in range(5):
            gc.collect()
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return best / count * 1e6

    gc.disable()  # attribute costs to the code, not to when a GC pass happens to run

    stats = EngineStats()
    dr_count = [0]

    def on_dr(err: Any, msg: Any) -> None:
        dr_count[0] += 1

    rows: list[tuple[str, float]] = []
    loop = t(lambda: [None for _ in msgs])
    rows.append(("empty loop over messages", loop))
    for name in ("error", "topic", "partition", "offset", "key", "value", "timestamp",
                 "headers"):
        rows.append((f"msg.{name}()", t(lambda name=name: [getattr(m, name)() for m in msgs])
                     - loop))
    rows.append(("orjson.loads(value)", t(lambda: [loads(m.value()) for m in msgs]) - loop))
    rows.append(("StringSerde.deserialize(key, ctx)",
                 t(lambda: [str_serde.deserialize(k, ctx) for k in keys]) - loop))
    rows.append(("JsonSerde.deserialize(value, ctx)",
                 t(lambda: [json_serde.deserialize(m.value(), ctx) for m in msgs]) - loop))
    rows.append(("Record(...) construction",
                 t(lambda: [Record(k, v, 1, None, inp, 0, 1)
                            for k, v in zip(keys, values, strict=True)]) - loop))
    rows.append(("punctuation.stream_time_due()",
                 t(lambda: [task.punctuation.stream_time_due(5) for m in msgs]) - loop))
    rows.append(("stats.records_out += 1 (dataclass attr)",
                 t(lambda: [setattr(stats, "records_out", stats.records_out + 1) for m in msgs])
                 - loop))
    discard = collections.deque(maxlen=0).append

    def raw_work() -> None:  # the raw loop's body, producing into a C-level no-op
        for msg in msgs:
            v = loads(msg.value())
            if v["amount"] >= MIN_AMOUNT:
                discard((out, dumps({"id": v["id"], "user": v["user"],
                                     "amount_cents": v["amount"] * 100}), msg.key()))

    def kstream_work() -> None:  # the engine's dispatch + the tasks' run handlers
        engine_batches(tasks, inp, msgs)

    predicate = lambda k, v: v["amount"] >= MIN_AMOUNT  # noqa: E731 - as the user wrote it
    mapper = lambda v: {"id": v["id"], "user": v["user"],  # noqa: E731
                        "amount_cents": v["amount"] * 100}
    punct = task.punctuation

    def fused_work() -> None:
        """What a fused stateless chain could cost with kstream's semantics kept: key and
        value serdes (fast paths for StringSerde/JsonSerde), record timestamp, stream time,
        the user's lambdas, one Record, error context filled in only on failure."""
        stream_time = -1
        for msg in msgs:
            if msg.error() is not None:
                continue
            try:
                key = str(msg.key(), "utf-8")
                value = loads(msg.value())
            except Exception:  # noqa: BLE001 - the real path would raise RecordError
                continue
            ts = msg.timestamp()[1]
            if ts > stream_time:
                stream_time = ts
            record = Record(key, value, ts, None, inp, 0, -1)
            if predicate(record.key, record.value):
                record.value = mapper(record.value)
                discard((out, dumps(record.value), record.key.encode(), -1, None, None,
                         record.timestamp, None))
            if stream_time >= punct._next_stream_due:
                pass

    rows.append(("RAW loop body per input record (loads, filter, map, dumps; no produce)",
                 t(raw_work)))
    rows.append(("KSTREAM dispatch + task handler per input record (null collector)",
                 t(kstream_work)))
    rows.append(("FUSED chain, same semantics, per input record (no produce)", t(fused_work)))

    def produce_all(producer: Producer) -> tuple[float, float]:
        """(µs per produce() call, µs per record to flush, i.e. serve delivery reports)."""
        produce = producer.produce
        started = time.perf_counter()
        for v, k in zip(out_values, out_keys, strict=True):
            produce(out, v, k)
        produced = time.perf_counter()
        producer.flush(60)
        flushed = time.perf_counter()
        per = len(out_values) / 1e6
        return (produced - started) / per, (flushed - produced) / per

    base = {"bootstrap.servers": servers, "linger.ms": 5, "partitioner": "murmur2_random",
            "enable.idempotence": True, "queue.buffering.max.messages": 2 * count + 10}
    variants = {
        "no delivery callback (EOS, raw EOS)": base,
        "producer-wide on_delivery (kstream ALOS)": {**base, "on_delivery": on_dr},
        "on_delivery + delivery.report.only.error (raw ALOS)":
            {**base, "on_delivery": on_dr, "delivery.report.only.error": True},
    }
    producers = {name: Producer(conf) for name, conf in variants.items()}
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in variants}
    for _ in range(3):  # interleaved rounds, best of 3: the librdkafka threads share 2 cores
        for name, producer in producers.items():
            dr_count[0] = 0
            call, flush = produce_all(producer)
            best[name] = [min(best[name][0], call), min(best[name][1], flush)]
    for name, (call, flush) in best.items():
        rows.append((f"produce() per output, {name}", call))
        rows.append((f"flush() per output, {name}", flush))
    gc.enable()
    # confluent-kafka: a positional None for `callback` (slot 4) hides `on_delivery` (slot 5).
    seen: list[object] = []
    probe = Producer(base)
    probe.produce(out, b"{}", b"k", -1, None, lambda err, msg: seen.append(msg))
    probe.flush(30)
    rows.append(("per-message on_delivery passed positionally after callback=None fired",
                 float(len(seen))))
    return rows


# -- driver ------------------------------------------------------------------------------------
def fmt_table(rows: list[dict[str, Any]]) -> str:
    head = ("| guarantee | raw rec/s (txn/commit cadence) | kstream rec/s | ratio | "
            "CPU µs/record raw (best cadence) / kstream | ratio by CPU | "
            "kstream peak RSS (alone) | process peak RSS | output check |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        raw = "; ".join(f"{v:,.0f} ({k})" for k, v in r["raw"].items())
        lines.append(
            f"| {r['guarantee']} | {raw} | {r['kstream']:,.0f} | "
            f"{r['ratio']:.2f}x (vs best raw); {r['ratio_batch']:.2f}x (vs first) | "
            f"{r['raw_cpu']:.1f} / {r['ks_cpu']:.1f} | {r['raw_cpu'] / r['ks_cpu']:.2f}x | "
            f"{r['rss_alone']:.0f} MB | {r['rss_process']:.0f} MB | {r['check']} |")
    return "\n".join(lines)


def cadence(guarantee: str, every: float) -> str:
    if every == 0:
        return "txn per batch" if guarantee == EOS else "commit per batch"
    return f"{'txn' if guarantee == EOS else 'flush+commit'} every {every * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--guarantee", choices=(EOS, ALOS, "both"), default="both")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=("kstream",), help="internal: run kstream alone")
    parser.add_argument("--bootstrap", help="internal/optional: broker to use")
    parser.add_argument("--input", help="internal: existing input topic")
    parser.add_argument("--profile", metavar="PATH", help="cProfile one kstream run into PATH")
    parser.add_argument("--micro", action="store_true",
                        help="offline per-record cost breakdown of the hot path")
    parser.add_argument("--json", metavar="PATH", help="also write raw results as JSON")
    args = parser.parse_args()
    guarantees = [EOS, ALOS] if args.guarantee == "both" else [args.guarantee]
    n = args.records

    if args.only == "kstream":
        res = run_kstream(args.bootstrap, args.input, n, args.partitions, guarantees[0])
        res["peak_rss_mb"] = peak_rss_mb()  # before verification reads anything
        print(json.dumps(res))
        return

    if args.bootstrap:
        os.environ["KSTREAM_BOOTSTRAP_SERVERS"] = args.bootstrap
    with bootstrap() as servers:
        inp = unique("orders")
        create_topics(servers, [inp], args.partitions)
        took = produce_orders(servers, inp, n)
        print(f"input: {n:,} records -> {inp} ({args.partitions} partitions) in {took:.1f}s",
              flush=True)
        if args.micro:
            rows = micro(servers, inp, min(n, 100_000))
            print("\n| piece | µs/record |\n|---|---|")
            for name, us in rows:
                print(f"| {name} | {us:.2f} |")
            return
        if args.profile:
            res = run_kstream(servers, inp, n, args.partitions, guarantees[0], args.profile)
            print(f"kstream {guarantees[0]} under cProfile: {res['rate']:,.0f} rec/s")
            buf = io.StringIO()
            pstats.Stats(args.profile, stream=buf).sort_stats("tottime").print_stats(30)
            print(buf.getvalue())
            return

        results: list[dict[str, Any]] = []
        table: list[dict[str, Any]] = []
        for g in guarantees:
            raw_rates: dict[str, list[float]] = {cadence(g, e): [] for e in RAW_VARIANTS[g]}
            ks_rates: list[float] = []
            raw_cpu: dict[str, list[float]] = {cadence(g, e): [] for e in RAW_VARIANTS[g]}
            ks_cpu: list[float] = []
            checks: list[bool] = []
            for rep in range(args.repeat):
                order = ["raw", "kstream"] if rep % 2 == 0 else ["kstream", "raw"]
                for side in order:
                    if side == "raw":
                        for every in RAW_VARIANTS[g]:
                            r = run_raw(servers, inp, n, args.partitions, g, every)
                            verify(servers, r, n)
                            raw_rates[cadence(g, every)].append(r["rate"])
                            raw_cpu[cadence(g, every)].append(r["cpu_us"])
                            results.append(r)
                            checks.append(r["output_ok"])
                            print(f"{g} raw ({cadence(g, every)}): {r['rate']:,.0f} rec/s, "
                                  f"CPU {r['cpu_us']:.1f} µs/record "
                                  f"[startup {r['startup_s']:.1f}s, tail {r['tail_s']:.2f}s, "
                                  f"output {r['output_count']:,}]", flush=True)
                    else:
                        r = run_kstream(servers, inp, n, args.partitions, g)
                        verify(servers, r, n)
                        ks_rates.append(r["rate"])
                        ks_cpu.append(r["cpu_us"])
                        results.append(r)
                        checks.append(r["output_ok"])
                        print(f"{g} kstream: {r['rate']:,.0f} rec/s, CPU {r['cpu_us']:.1f} "
                              f"µs/record [startup "
                              f"{r['startup_s']:.1f}s, tail {r['tail_s']:.2f}s, commits "
                              f"{r['commits']}, output {r['output_count']:,}]", flush=True)
            alone = kstream_subprocess(servers, inp, n, args.partitions, g)
            verify(servers, alone, n)
            checks.append(alone["output_ok"])
            results.append(alone)
            print(f"{g} kstream alone (subprocess): {alone['rate']:,.0f} rec/s, peak RSS "
                  f"{alone['peak_rss_mb']:.0f} MB", flush=True)
            raw_med = {k: median(v) for k, v in raw_rates.items()}
            ks = median(ks_rates)
            best = max(raw_med, key=lambda k: raw_med[k])
            table.append({"guarantee": g, "raw": raw_med, "kstream": ks,
                          "raw_cpu": median(raw_cpu[best]), "ks_cpu": median(ks_cpu),
                          "ratio": ks / max(raw_med.values()),
                          "ratio_batch": ks / next(iter(raw_med.values())),
                          "rss_alone": alone["peak_rss_mb"], "rss_process": peak_rss_mb(),
                          "check": "ok" if all(checks) else "MISMATCH"})
        print()
        print(f"{datetime.date.today()} · {machine_note()} · {n:,} records, "
              f"{args.partitions} partitions, repeat {args.repeat} (medians)")
        print(fmt_table(table))
        if args.json:
            Path(args.json).write_text(json.dumps({"runs": results, "table": table}, indent=1))


if __name__ == "__main__":
    main()
