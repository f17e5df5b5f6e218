"""End-to-end latency at a steady input rate: kstream vs a raw confluent-kafka loop.

Latency of a record = the moment its output became readable by a read_committed consumer
minus the moment the input producer sent it (the input record's timestamp, which both sides
carry over to the output). Pipelines (both sides, 4 partitions):

- stateless: JSON orders -> filter amount >= 100 (80 % pass) -> map -> JSON
- count:     JSON orders -> count per key (1,000 keys, changelogged store) -> int64, every
             update emitted

under at-least-once (commit every 1 s, kstream's default) and exactly-once (one transaction
every 100 ms, kstream's default). Each side, the paced producer and the measuring consumer run
in their own processes, so they do not share a GIL:

    python bench/latency.py [--rate 20000] [--seconds 20] [--warmup 3] [--repeat 1]
                            [--pipelines stateless,count]
                            [--guarantees at_least_once,exactly_once]
                            [--sides raw,kstream,kafka-streams]

The `kafka-streams` side is bench/peers' Maven project (kstream.bench.LatencySide, Kafka
Streams 4.1.1, one stream thread, record cache off, the same commit intervals; built with
`mvn -q package` on first use). The JVM gets the same warm-up as the others: the first
`--warmup` seconds are not measured.

The raw loop is a competent low-latency loop: it takes what has arrived (`consume(1000, 0)`)
and blocks (`consume(1, 0.1)`) only when nothing has, commits on the same cadence as kstream
and writes the count's changelog (dirty keys) at each commit. Every run is verified: each
passing order id exactly once (stateless); every input counted, final count per key exact
(count). Without KSTREAM_BOOTSTRAP_SERVERS a LocalBroker is started.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    create_topics,
    create_topics_with_config,
    machine_note,
    median,
    unique,
)

EOS, ALOS = "exactly_once", "at_least_once"
COMMIT_S = {EOS: 0.1, ALOS: 1.0}  # kstream's default commit intervals
MIN_AMOUNT = 100
PROBE_KEY = b"probe"
_Q = struct.Struct(">q")


def order(i: int, keys: int) -> tuple[bytes, bytes]:
    user = f"u{i % keys}"
    return user.encode(), orjson.dumps({"id": i, "user": user, "amount": i % 500})


def passes(i: int) -> bool:
    return i % 500 >= MIN_AMOUNT


# -- the sides (each runs in its own process until SIGTERM) ------------------------------------
def serve_kstream(servers: str, pipeline: str, guarantee: str, inp: str, out: str) -> None:
    from kstream import App, StreamBuilder
    from serdes import Int64Serde, JsonSerde, StringSerde

    b = StreamBuilder()
    s = b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
    if pipeline == "stateless":
        (s.filter(lambda k, v: v["amount"] >= MIN_AMOUNT)
          .map_values(lambda v: {"id": v["id"], "user": v["user"],
                                 "amount_cents": v["amount"] * 100})
          .to(out, value_serde=JsonSerde()))
    else:
        s.group_by_key().count("counts").to_stream().to(out, value_serde=Int64Serde())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pauses = _watch_gc()
    commits = _watch_commits()
    phases = _watch_commit_phases()
    with tempfile.TemporaryDirectory(prefix="kstream-bench-latency-") as state_dir:
        App(b, application_id=unique("bench-lat"), bootstrap_servers=servers,
            processing_guarantee=guarantee, state_dir=state_dir).run()  # SIGTERM: clean stop
    _print_pauses({**{f"gc generation {gen}": times for gen, times in enumerate(pauses)},
                   "commit": commits, **phases})


def _print_pauses(pauses: dict[str, list[float]]) -> None:
    """For the side's log: how long the loop stood still, and why."""
    for label, times in pauses.items():
        if times:
            ordered = sorted(times)
            print(f"{label}: {len(times)} pauses, median {median(ordered) * 1000:.1f} ms, max "
                  f"{ordered[-1] * 1000:.1f} ms, total {sum(times) * 1000:.0f} ms",
                  file=sys.stderr)


def _timed(fn: Any, durations: list[float]) -> Any:
    """`fn`, appending each call's duration to `durations` (bench-only instrumentation)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - began)
    return wrapper


def _watch_commits() -> list[float]:
    """Durations of the engine's commits (a bench-only wrapper around a private method): the
    loop processes nothing while it commits, so a long commit is a latency spike."""
    from kstream.runtime.engine import Engine

    durations: list[float] = []
    Engine._commit = _timed(Engine._commit, durations)  # type: ignore[method-assign]
    return durations


def _watch_commit_phases() -> dict[str, list[float]]:
    """Durations of the commit's waits on Kafka (bench-only wrappers around private helpers
    of kstream.runtime.commit): producer flushes, offset commits, transaction calls."""
    from kstream.runtime import commit as commit_module

    phases: dict[str, list[float]] = {"commit phase flush": [], "commit phase offsets": [],
                                      "commit phase transaction call": []}
    commit_module._flush = _timed(  # type: ignore[assignment]
        commit_module._flush, phases["commit phase flush"])
    commit_module._commit_offsets = _timed(  # type: ignore[assignment]
        commit_module._commit_offsets, phases["commit phase offsets"])
    commit_module._end_call = _timed(  # type: ignore[assignment]
        commit_module._end_call, phases["commit phase transaction call"])
    return phases


def _watch_gc() -> list[list[float]]:
    """Durations of the cyclic garbage collector's pauses per generation, for the side's log:
    a pause holds every record in flight, so it shows up in the tail latencies."""
    import gc

    pauses: list[list[float]] = [[], [], []]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])

    gc.callbacks.append(on_gc)
    return pauses


def serve_raw(servers: str, pipeline: str, guarantee: str, inp: str, out: str) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    eos = guarantee == EOS
    changelog = unique("raw-lat-changelog")
    if pipeline == "count":
        create_topics_with_config(servers, [changelog], 4, {"cleanup.policy": "compact"})
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-lat-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed" if eos else "read_uncommitted",
        "partition.assignment.strategy": "range",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 2_000})
    conf: dict[str, Any] = {"bootstrap.servers": servers, "linger.ms": 5,
                            "partitioner": "murmur2_random", "enable.idempotence": True}
    if eos:
        conf.update({"transactional.id": unique("raw-lat-txn"), "transaction.timeout.ms": 10_000})
    else:
        conf["delivery.report.only.error"] = True
    producer = Producer(conf)
    if eos:
        producer.init_transactions(30)
    loads, dumps, produce, pack = orjson.loads, orjson.dumps, producer.produce, _Q.pack
    counts: dict[bytes, int] = {}
    dirty: dict[bytes, tuple[int, int]] = {}
    in_txn = False
    every = COMMIT_S[guarantee]
    commits: list[float] = []
    next_commit = time.monotonic() + every

    def commit() -> None:
        nonlocal in_txn
        for key, (partition, count) in dirty.items():
            produce(changelog, pack(count), key, partition)
        dirty.clear()
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        if eos:
            if in_txn:
                producer.send_offsets_to_transaction(positions,
                                                     consumer.consumer_group_metadata(), 30)
                producer.commit_transaction(30)
                in_txn = False
        else:
            producer.flush(30)
            if positions:
                consumer.commit(offsets=positions, asynchronous=False)

    consumer.subscribe([inp])
    while not stop:
        msgs = consumer.consume(1000, 0)  # what has arrived; block only when nothing has
        if not msgs:
            msgs = consumer.consume(1, max(0.0, min(0.1, next_commit - time.monotonic())))
        if msgs:
            if eos and not in_txn:
                producer.begin_transaction()
                in_txn = True
            for msg in msgs:
                if msg.error() is not None:
                    continue
                key, ts = msg.key(), msg.timestamp()[1]
                if pipeline == "stateless":
                    v = loads(msg.value())  # type: ignore[arg-type]
                    if v["amount"] < MIN_AMOUNT:
                        continue
                    value = dumps({"id": v["id"], "user": v["user"],
                                   "amount_cents": v["amount"] * 100})
                else:
                    loads(msg.value())  # type: ignore[arg-type]  # the decoding kstream does
                    count = counts.get(key, 0) + 1  # type: ignore[arg-type]
                    counts[key] = count  # type: ignore[index]
                    dirty[key] = (msg.partition() or 0, count)  # type: ignore[index]
                    value = pack(count)
                while True:
                    try:
                        produce(out, value, key, -1, None, None, ts)
                        break
                    except BufferError:
                        producer.poll(0.05)
        producer.poll(0)
        if time.monotonic() >= next_commit:
            began = time.perf_counter()
            commit()
            commits.append(time.perf_counter() - began)
            next_commit = time.monotonic() + every
    commit()
    consumer.close()
    _print_pauses({"commit": commits})


def serve_producer(servers: str, inp: str, rate: int, seconds: float, keys: int) -> None:
    """Send `rate` records/s for `seconds`, each stamped with its send time (ms)."""
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "enable.idempotence": True, "partitioner": "murmur2_random"})
    produce = producer.produce
    started = time.time()
    i = 0
    while True:
        now = time.time()
        elapsed = now - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        ts = int(now * 1000)
        while i < due:
            key, value = order(i, keys)
            try:
                produce(inp, value, key, -1, None, None, ts)
            except BufferError:
                producer.poll(0.01)
                continue
            i += 1
        producer.poll(0)
        time.sleep(0.0005)  # pacing, not synchronisation: the next 0.5 ms of records
    remaining = producer.flush(60)
    print(json.dumps({"sent": i, "t_start": started, "t_end": time.time(),
                      "unflushed": remaining}), flush=True)


# -- one measured run --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


LOG_DIR = Path(tempfile.gettempdir()) / "kstream-bench-latency-logs"


def spawn(args: list[str], log_name: str | None = None, command: list[str] | None = None
          ) -> subprocess.Popen[str]:
    """A side or the producer in its own process (this script with `args`, or `command`); a
    side's log (stderr) goes to LOG_DIR, so an outlier run can be looked into afterwards (its
    path is printed with the run)."""
    stderr: Any = subprocess.DEVNULL
    if os.environ.get("LATENCY_DEBUG"):
        stderr = None
    elif log_name is not None:
        LOG_DIR.mkdir(exist_ok=True)
        stderr = open(LOG_DIR / log_name, "w")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(command or [sys.executable, __file__, *args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def kafka_streams_command(servers: str, pipeline: str, guarantee: str, inp: str, out: str,
                          state_dir: str) -> list[str]:
    from peers.run import JAR, ensure_jar

    ensure_jar()
    return ["java", "-cp", str(JAR), "kstream.bench.LatencySide", "--pipeline", pipeline,
            "--guarantee", guarantee, "--bootstrap", servers, "--input", inp, "--output", out,
            "--app-id", unique("ks-lat"), "--state-dir", state_dir,
            "--commit-ms", str(int(COMMIT_S[guarantee] * 1000))]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_one(servers: str, side: str, pipeline: str, guarantee: str, args: argparse.Namespace
            ) -> dict[str, Any]:
    inp, out = unique(f"lat-in-{pipeline}"), unique(f"lat-out-{pipeline}")
    create_topics(servers, [inp, out], 4)
    reader = Consumer({"bootstrap.servers": servers, "group.id": unique("lat-reader"),
                       "enable.auto.commit": False, "isolation.level": "read_committed",
                       "fetch.wait.max.ms": 10, "auto.offset.reset": "earliest"})
    reader.assign([TopicPartition(out, p, OFFSET_BEGINNING) for p in range(4)])
    log_name = f"{side}-{pipeline}-{guarantee}-{inp}.log"
    state_dir = tempfile.mkdtemp(prefix="kstream-bench-latency-side-")
    command = (kafka_streams_command(servers, pipeline, guarantee, inp, out, state_dir)
               if side == "kafka-streams" else None)
    proc = spawn(["--serve", side, "--pipeline", pipeline, "--guarantee", guarantee,
                  "--bootstrap", servers, "--input", inp, "--output", out], log_name, command)
    probe = Producer({"bootstrap.servers": servers, "linger.ms": 0})
    outputs: list[tuple[bytes | None, bytes | None, int, float]] = []
    try:
        # Ready once a probe record made it through (group joined, transaction started).
        deadline = time.monotonic() + 120  # a JVM side starts in seconds, not milliseconds
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            probe.produce(inp, orjson.dumps({"id": -1, "user": "probe", "amount": 499}),
                          PROBE_KEY)
            probe.flush(5)
            until = time.monotonic() + 0.3
            while time.monotonic() < until and not ready:
                ready = any(m.error() is None and m.key() == PROBE_KEY
                            for m in reader.consume(100, 0.05))
        if not ready:
            raise RuntimeError(f"{side} {pipeline} {guarantee}: not ready (exit {proc.poll()})")
        producer = spawn(["--serve", "producer", "--bootstrap", servers, "--input", inp,
                          "--rate", str(args.rate), "--seconds", str(args.seconds),
                          "--keys", str(args.keys)])
        cpu0, t0 = cpu_seconds(proc.pid), time.time()
        expected_total = None
        deadline = time.monotonic() + args.seconds + 120
        got = 0
        cpu1 = None
        while time.monotonic() < deadline:
            msgs = reader.consume(1000, 0)
            if not msgs:
                msgs = reader.consume(1, 0.05)
            now_ms = time.time() * 1000
            for m in msgs:
                if m.error() is None and m.key() != PROBE_KEY:
                    outputs.append((m.key(), m.value(), m.timestamp()[1], now_ms))
                    got += 1
            if expected_total is None and producer.poll() is not None:
                cpu1, t1 = cpu_seconds(proc.pid), time.time()
                text = producer.stdout.read() if producer.stdout is not None else ""
                report = json.loads(text.strip().splitlines()[-1])
                sent = report["sent"]
                expected_total = (sum(1 for i in range(sent) if passes(i))
                                  if pipeline == "stateless" else sent)
            if expected_total is not None and got >= expected_total:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    if expected_total is None or cpu1 is None:
        raise RuntimeError(f"{side} {pipeline} {guarantee}: producer did not finish")
    t_measure = report["t_start"] * 1000 + args.warmup * 1000
    lat = sorted(recv - ts for _, _, ts, recv in outputs if ts >= t_measure)
    check = verify(pipeline, outputs, sent, args.keys)
    return {"side": side, "pipeline": pipeline, "guarantee": guarantee, "sent": sent,
            "rate": sent / (report["t_end"] - report["t_start"]), "outputs": len(outputs),
            "measured": len(lat), "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99),
            "p999": percentile(lat, 0.999), "max": lat[-1] if lat else float("nan"),
            "cpu_share": (cpu1 - cpu0) / (t1 - t0), "check": check,
            "log": str(LOG_DIR / log_name)}


def verify(pipeline: str, outputs: list[tuple[bytes | None, bytes | None, int, float]],
           sent: int, keys: int) -> str:
    if pipeline == "stateless":
        ids = [orjson.loads(v)["id"] for _, v, _, _ in outputs]  # type: ignore[arg-type]
        want = [i for i in range(sent) if passes(i)]
        if len(ids) != len(want):
            return f"MISMATCH: {len(ids)} outputs, expected {len(want)}"
        return "ok" if sorted(ids) == want else "MISMATCH: wrong ids"
    latest: dict[bytes | None, int] = {}
    for key, value, _, _ in outputs:
        latest[key] = max(latest.get(key, 0), _Q.unpack(value)[0])  # type: ignore[arg-type]
    want_counts = {f"u{k}".encode(): len(range(k, sent, keys)) for k in range(min(keys, sent))}
    if len(outputs) != sent:
        return f"MISMATCH: {len(outputs)} updates, expected {sent}"
    return "ok" if latest == want_counts else "MISMATCH: wrong counts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pipelines", default="stateless,count")
    parser.add_argument("--guarantees", default=f"{ALOS},{EOS}")
    parser.add_argument("--sides", default="raw,kstream")
    parser.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    parser.add_argument("--serve", choices=("raw", "kstream", "producer"), help="internal")
    parser.add_argument("--pipeline", help="internal")
    parser.add_argument("--guarantee", help="internal")
    parser.add_argument("--bootstrap", help="internal")
    parser.add_argument("--input", help="internal")
    parser.add_argument("--output", help="internal")
    args = parser.parse_args()
    if args.serve == "producer":
        serve_producer(args.bootstrap, args.input, args.rate, args.seconds, args.keys)
        return
    if args.serve:
        serve = serve_kstream if args.serve == "kstream" else serve_raw
        serve(args.bootstrap, args.pipeline, args.guarantee, args.input, args.output)
        return
    runs: list[dict[str, Any]] = []
    with bootstrap() as servers:
        for rep in range(args.repeat):
            for pipeline in args.pipelines.split(","):
                for guarantee in args.guarantees.split(","):
                    sides = args.sides.split(",")
                    for side in sides if rep % 2 == 0 else sides[::-1]:
                        r = run_one(servers, side, pipeline, guarantee, args)
                        runs.append(r)
                        print(f"{side:8} {pipeline:9} {guarantee:13} sent {r['sent']:,} at "
                              f"{r['rate']:,.0f}/s: p50 {r['p50']:.0f} p99 {r['p99']:.0f} "
                              f"p99.9 {r['p999']:.0f} max {r['max']:.0f} ms, side CPU "
                              f"{r['cpu_share']:.0%}, {r['check']}"
                              + (f" (outlier: log {r['log']})" if r["p99"] > 1000 else ""),
                              flush=True)
    print()
    print(f"{datetime.date.today()} · {machine_note()} · {args.rate:,} records/s for "
          f"{args.seconds:.0f} s (first {args.warmup:.0f} s not measured), repeat "
          f"{args.repeat} (medians)")
    print("| pipeline | guarantee | side | p50 ms | p99 ms | p99.9 ms | max ms | side CPU | "
          "check |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["pipeline"], r["guarantee"], r["side"]), []).append(r)
    for (pipeline, guarantee, side), rs in groups.items():
        def med(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return median([r[k] for r in rs])
        ok = "ok" if all(r["check"] == "ok" for r in rs) else "MISMATCH"
        print(f"| {pipeline} | {guarantee} | {side} | {med('p50'):.0f} | {med('p99'):.0f} | "
              f"{med('p999'):.0f} | {med('max'):.0f} | {med('cpu_share'):.0%} | {ok} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
