"""Failover benchmark: SIGKILL one of 3 instances holding a big store; how long until the
killed instance's partitions produce output again, with and without a standby replica.

    python bench/failover.py [--keys 1200000] [--session-ms 6000] [--txn-ms 5000]
                             [--modes raw,none,standby]

Setup per mode: 6 input partitions holding `--keys` distinct keys; 3 instances of
bench/failover_app.py (exactly-once, one RocksDB store) aggregate them, so the store holds
`--keys` keys (a third per instance); with `standby` each instance also keeps a standby of
the tasks it would get if their owner died (num_standby_replicas=1) and the run waits until
every standby's lag (the kstream_standby_lag_records metric) is 0. Then a steady load of
updates runs, one instance is SIGKILLed, and a read_committed consumer on the killed
instance's output partitions waits for the first record each of them gets that was processed
after the kill. The figure is the time from SIGKILL to the last of those partitions.

The baseline (`raw`, the project's rule: a raw confluent-kafka loop in the same run) is 3
processes of a bare consume -> produce loop in one consumer group with the same session
timeout: the failover time of Kafka itself, with no state. This is a latency benchmark on a
shared machine: one kill per mode, and the figures move with the machine's load.
Uses KSTREAM_BOOTSTRAP_SERVERS if set, else starts a LocalBroker.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from _common import bootstrap, create_topics, machine_note, produce_keyed, unique
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

BENCH = Path(__file__).resolve().parent
PARTITIONS = 6
INSTANCES = 3
ASSIGN = re.compile(r"event=assign partitions=(\S+)")
RESTORED = re.compile(r"event=restored stores=(\d+) from_scratch=(\d+) records=(\d+) "
                      r"seconds=([\d.]+)")
LOAD_PER_S = 2000


def raw_worker(servers: str, group: str, inp: str, out: str, session_ms: int) -> None:
    """The baseline: a bare consume -> produce loop (no state, no transactions)."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group,
                         "session.timeout.ms": session_ms,
                         "heartbeat.interval.ms": max(100, min(1000, session_ms // 20)),
                         "auto.offset.reset": "earliest", "partition.assignment.strategy":
                         "range", "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    consumer.subscribe([inp], on_assign=lambda _c, ps: print(
        "event=assign partitions=" + ",".join(f"{p.topic}[{p.partition}]" for p in ps),
        flush=True))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        for msg in consumer.consume(1000, 0.1):
            if msg.error() is None:
                producer.produce(out, orjson.dumps({"n": 1, "at": time.time()}), msg.key())
        producer.poll(0)
    producer.flush(10)
    consumer.close()


class Instance:
    def __init__(self, n: int, env: dict[str, str], log: Path, raw: bool) -> None:
        self.n, self.log = n, log
        cmd = ([sys.executable, str(BENCH / "failover.py"), "--raw-worker"] if raw else
               [sys.executable, "-m", "kstream.cli", "run", "failover_app:app"])
        with open(log, "ab") as f:
            self.proc = subprocess.Popen(cmd, cwd=BENCH, env={**os.environ, **env},
                                         stdout=f, stderr=subprocess.STDOUT)

    def partitions(self, topic: str) -> set[int]:
        found = ASSIGN.findall(self.log.read_text(errors="replace"))
        if not found:
            return set()
        return {int(p.rsplit("[", 1)[1].rstrip("]")) for p in found[-1].split(",")
                if p.rsplit("[", 1)[0] == topic}

    def restores(self) -> list[tuple[int, int, int, float]]:
        return [(int(a), int(b), int(c), float(d))
                for a, b, c, d in RESTORED.findall(self.log.read_text(errors="replace"))]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(cond, timeout: float, what: str, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def committed_total(servers: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": servers, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return sum(max(0, tp.offset) for tp in tps)
    finally:
        c.close()


def standby_lags(ports: list[int]) -> list[int] | None:
    """Every standby's lag from the instances' /metrics, None while one cannot answer."""
    lags = []
    for port in ports:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            return None
        for line in text.decode().splitlines():
            if line.startswith("kstream_standby_lag_records{"):
                lags.append(int(float(line.rsplit(" ", 1)[1])))
    return lags


class Load:
    """Updates of existing keys, LOAD_PER_S a second, until stopped."""

    def __init__(self, servers: str, topic: str, keys: int) -> None:
        self.producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                                  "partitioner": "murmur2_random"})
        self.topic, self.keys = topic, keys
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.wait(0.05):  # pacing
            for _ in range(LOAD_PER_S // 20):
                self.producer.produce(self.topic, b"u", f"k{rng.randrange(self.keys)}".encode())
            self.producer.poll(0)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.producer.flush(30)


def first_output_after(servers: str, out: str, parts: set[int], kill: threading.Event,
                       result: dict[int, float], timeout: float) -> None:
    """Per partition of `parts`, the wall time its first record processed after the kill
    became readable (read_committed)."""
    c = Consumer({"bootstrap.servers": servers, "group.id": unique("watch"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(out, p, OFFSET_END) for p in parts])
    deadline = time.monotonic() + timeout
    killed_at = None
    try:
        while time.monotonic() < deadline and len(result) < len(parts):
            msgs = c.consume(1000, 0.05)
            if kill.is_set() and killed_at is None:
                killed_at = float(kill.killed_at)  # type: ignore[attr-defined]
            now = time.time()
            for m in msgs:
                if m.error() is not None or killed_at is None:
                    continue
                if orjson.loads(m.value())["at"] > killed_at and m.partition() not in result:
                    result[m.partition()] = now - killed_at
    finally:
        c.close()


def run_mode(servers: str, mode: str, args: argparse.Namespace, work: Path) -> dict[str, object]:
    inp, out, app_id = unique("fo-in"), unique("fo-out"), unique(f"fo-{mode}")
    create_topics(servers, [inp, out], PARTITIONS)
    took = produce_keyed(servers, inp, ((f"k{i}".encode(), b"v") for i in range(args.keys)))
    print(f"[{mode}] produced {args.keys} keys in {took:.1f}s", flush=True)
    raw = mode == "raw"
    ports = [free_port() for _ in range(INSTANCES)]
    instances = []
    for n in range(INSTANCES):
        env = {"FAILOVER_INPUT": inp, "FAILOVER_OUTPUT": out, "FAILOVER_APP_ID": app_id,
               "FAILOVER_BOOTSTRAP": servers, "FAILOVER_STATE_DIR": str(work / f"{mode}-{n}"),
               "FAILOVER_SESSION_MS": str(args.session_ms), "FAILOVER_TXN_MS": str(args.txn_ms),
               "KSTREAM_NUM_STANDBY_REPLICAS": "1" if mode == "standby" else "0",
               "KSTREAM_METRICS_PORT": str(ports[n]), "KSTREAM_LOG_LEVEL": "INFO",
               "PYTHONPATH": os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH",
                                                                                 "")])}
        if raw:
            env.update(RAW_GROUP=app_id)
        instances.append(Instance(n, env, work / f"{mode}-{n}.log", raw))
    try:
        began = time.monotonic()
        wait_for(lambda: all(i.partitions(inp) for i in instances), 180, "3 assignments")
        wait_for(lambda: committed_total(servers, app_id, inp) >= args.keys, 1800,
                 f"{args.keys} records processed", interval=1.0)
        print(f"[{mode}] processed in {time.monotonic() - began:.1f}s", flush=True)
        if mode == "standby":
            wait_for(lambda: (lags := standby_lags(ports)) is not None and len(lags) == PARTITIONS
                     and not any(lags), 600, "standbys caught up", interval=1.0)
            print(f"[{mode}] standbys caught up after {time.monotonic() - began:.1f}s",
                  flush=True)
        load = Load(servers, inp, args.keys)
        victim = instances[0]
        parts = victim.partitions(inp)
        survivors = instances[1:]
        restores_before = [len(i.restores()) for i in survivors]
        kill = threading.Event()
        result: dict[int, float] = {}
        watcher = threading.Thread(target=first_output_after,
                                   args=(servers, out, parts, kill, result, 180))
        watcher.start()
        # The watcher must be positioned before the kill; 3 s of load show the steady state.
        time.sleep(3)
        kill.killed_at = time.time()  # type: ignore[attr-defined]
        print(f"[{mode}] SIGKILL instance 0 at {time.strftime('%H:%M:%S')}", flush=True)
        victim.stop(signal.SIGKILL)
        kill.set()
        watcher.join(200)
        load.stop()
        after = [r for i, n in zip(survivors, restores_before, strict=True)
                 for r in i.restores()[n:]]
        if len(result) < len(parts):
            raise RuntimeError(f"[{mode}] partitions {sorted(parts - set(result))} produced "
                               f"nothing within 180 s")
        figure = max(result.values())
        print(f"[{mode}] SIGKILL -> partitions {sorted(parts)} produce again: {figure:.2f}s "
              f"(per partition {', '.join(f'{p}: {s:.2f}' for p, s in sorted(result.items()))});"
              f" survivors' restores (stores, from scratch, records, s): {after}", flush=True)
        if args.verbose:
            for i in survivors:
                for line in i.log.read_text(errors="replace").splitlines():
                    if re.search(r"event=(assign|revoke|restored|lost|recover|standbys|"
                                 r"fence_\w+)", line):
                        print(f"  instance {i.n}: {line[:200]}")
        return {"mode": mode, "failover_s": figure, "restores": after}
    finally:
        for i in instances:
            i.stop()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_200_000)
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--txn-ms", type=int, default=5000)
    parser.add_argument("--modes", default="raw,none,standby")
    parser.add_argument("--verbose", action="store_true",
                        help="print the survivors' rebalance and restore log lines")
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(os.environ["FAILOVER_BOOTSTRAP"], os.environ["RAW_GROUP"],
                   os.environ["FAILOVER_INPUT"], os.environ["FAILOVER_OUTPUT"],
                   int(os.environ["FAILOVER_SESSION_MS"]))
        return
    print(machine_note(), flush=True)
    results = []
    with bootstrap() as servers, tempfile.TemporaryDirectory(prefix="kstream-failover-") as d:
        for mode in args.modes.split(","):
            results.append(run_mode(servers, mode, args, Path(d)))
    figures = {r["mode"]: float(r["failover_s"]) for r in results}  # type: ignore[arg-type]
    print(f"failover (s): {figures}; session timeout {args.session_ms / 1000:.1f}s, "
          f"transaction timeout {args.txn_ms / 1000:.1f}s, {args.keys} keys")
    if "none" in figures and "standby" in figures:
        print(f"without / with a standby: {figures['none'] / figures['standby']:.2f}x")
    if "raw" in figures:
        for mode in ("none", "standby"):
            if mode in figures:
                print(f"{mode} / raw consume-produce group: {figures[mode] / figures['raw']:.2f}x")


if __name__ == "__main__":
    main()
