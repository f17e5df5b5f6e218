"""Shared helpers for kstream benchmarks: broker, topics, input data, timing, memory.

Every benchmark compares kstream against a hand-written confluent-kafka loop run in the same
process lifetime on the same broker, and reports ratios: the machines we run on are noisy.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import platform
import resource
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COUNTRIES = ("DE", "FR", "US", "GB", "JP", "BR", "IN", "NL")


@contextlib.contextmanager
def bootstrap() -> Iterator[str]:
    """KSTREAM_BOOTSTRAP_SERVERS if set, else a LocalBroker for the duration of the block."""
    env = os.environ.get("KSTREAM_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    from kstream.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(servers: str, names: list[str], partitions: int, timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names],
                                  operation_timeout=timeout)
    for fut in futures.values():
        fut.result(timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(n in md and len(md[n].partitions) == partitions
               and all(p.leader >= 0 for p in md[n].partitions.values()) for n in names):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topics {names} have no leaders after {timeout}s")


def order_value(i: int) -> bytes:
    """The benchmark's input record (~80 bytes of JSON)."""
    return orjson.dumps({"id": i, "user": f"u{i % 1000}", "amount": i % 500,
                         "country": COUNTRIES[i % len(COUNTRIES)]})


def produce_orders(servers: str, topic: str, count: int) -> float:
    """Produce `count` order records fast (linger, big batches); returns seconds taken."""
    return produce_keyed(servers, topic, ((f"u{i % 1000}".encode(), order_value(i))
                                          for i in range(count)))


def count_topic(servers: str, topic: str, expected: int, timeout: float,
                check: Callable[[bytes | None, bytes | None], None] | None = None) -> int:
    """Read `topic` read_committed from the beginning until every partition is at its end and
    at least `expected` records arrived (or the deadline); returns the count. `check(key,
    value)` runs on every record."""
    admin = AdminClient({"bootstrap.servers": servers})
    parts = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": servers, "group.id": unique("bench-reader"),
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    at_end: set[int] = set()
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while (len(at_end) < len(parts) or count < expected) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())  # type: ignore[arg-type]
                        continue
                    raise RuntimeError(f"reading {topic}: {err}")
                at_end.discard(msg.partition())  # type: ignore[arg-type]
                count += 1
                if check is not None:
                    check(msg.key(), msg.value())
    finally:
        consumer.close()
    return count


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mb() -> float:
    """Peak resident set of this process image (VmHWM): unlike ru_maxrss, reset by execve, so a
    child started from a big parent reports only its own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_note() -> str:
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"broker on the same host")


class Poller:
    """Samples `probe()` every `interval` s in a daemon thread until `done(value)` holds.

    Records the first time `started(value)` held and the time `done(value)` held, so a run can
    be timed from its first processed batch (after the group join) to its last record.
    """

    def __init__(self, probe: Callable[[], object], started: Callable[[object], bool],
                 done: Callable[[object], bool], interval: float = 0.005) -> None:
        self.probe, self.started, self.done, self.interval = probe, started, done, interval
        self.t_start: float | None = None
        self.t_done: float | None = None
        # Process CPU (all threads, librdkafka's included) at those two moments, and this
        # thread's own CPU at them: the poller is the benchmark's, not the app's, so
        # `app_cpu_seconds` leaves it out (the raw loop has no poller to pay for).
        self.cpu_start: float | None = None
        self.cpu_done: float | None = None
        self._own_start = self._own_done = 0.0
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-poller")

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.finished.is_set():
            value = self.probe()
            now = time.perf_counter()
            if self.t_start is None and self.started(value):
                self.t_start, self.cpu_start = now, time.process_time()
                self._own_start = time.thread_time()
            if self.done(value):
                self.t_done, self.cpu_done = now, time.process_time()
                self._own_done = time.thread_time()
                self.finished.set()
                return
            time.sleep(self.interval)

    def app_cpu_seconds(self) -> float:
        """Process CPU between start and done, minus the poller thread's own share."""
        if self.cpu_done is None or self.cpu_start is None:
            return float("nan")
        return (self.cpu_done - self.cpu_start) - (self._own_done - self._own_start)

    def wait(self, timeout: float) -> bool:
        return self.finished.wait(timeout)

    def cancel(self) -> None:
        self.finished.set()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- additions for bench/stateful.py -----------------------------------------------------------
def create_topics_with_config(servers: str, names: list[str], partitions: int,
                              config: dict[str, str], timeout: float = 30.0) -> None:
    """Like `create_topics`, with topic configs (e.g. {"cleanup.policy": "compact"})."""
    admin = AdminClient({"bootstrap.servers": servers})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=dict(config))
                                   for n in names], operation_timeout=timeout)
    for fut in futures.values():
        fut.result(timeout=timeout)
    create_topics_wait(admin, names, partitions, timeout)


def create_topics_wait(admin: AdminClient, names: list[str], partitions: int,
                       timeout: float) -> None:
    """Wait until every partition of `names` has a leader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(timeout=10).topics
        if all(n in md and len(md[n].partitions) == partitions
               and all(p.leader >= 0 for p in md[n].partitions.values()) for n in names):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topics {names} have no leaders after {timeout}s")


def produce_keyed(servers: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> float:
    """Produce (key, value) records fast (linger, big batches, Java partitioner); seconds."""
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 20,
                         "batch.num.messages": 10000, "batch.size": 1_000_000,
                         "compression.type": "none", "enable.idempotence": True,
                         "partitioner": "murmur2_random"})
    started = time.perf_counter()
    produce = producer.produce
    for key, value in records:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError(f"producing the input to {topic} did not finish")
    return time.perf_counter() - started


def read_latest(servers: str, topic: str, timeout: float = 300.0
                ) -> tuple[int, dict[bytes | None, bytes | None]]:
    """Read `topic` read_committed to its end: (record count, last value per key)."""
    latest: dict[bytes | None, bytes | None] = {}
    count = count_topic(servers, topic, 0, timeout, check=latest.__setitem__)
    return count, latest


@dataclass
class TimedRun:
    """One kstream app run, timed from outside by sampling its stats (see Poller)."""

    stats: dict[str, Any]  # the app's counters the moment `done` first held
    t_launch: float
    t_start: float  # first batch consumed
    t_done: float  # `done` first held
    t_stopped: float  # app stopped and joined
    cpu_seconds: float = float("nan")  # process CPU between t_start and t_done

    @property
    def seconds(self) -> float:
        return self.t_done - self.t_start

    @property
    def rate(self) -> float:
        return self.stats["records_in"] / self.seconds


def run_app_timed(app: Any, done: Callable[[dict[str, Any]], bool], timeout_s: float,
                  profile: str | None = None) -> TimedRun:
    """Run `app` in a thread until `done(app.stats)` (or failure/deadline), then stop it.

    With `profile`, cProfile covers the app thread only and is written to that path.
    """
    failure: list[BaseException] = []
    prof = cProfile.Profile() if profile else None

    def target() -> None:
        try:
            if prof is not None:
                prof.enable()
            app.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's thread
            failure.append(exc)
        finally:
            if prof is not None:
                prof.disable()

    # The probe reads the engine's two counters, not `app.stats` (a full snapshot with per-task
    # sums, ~20 µs): 200 samples a second of that were charged to kstream's CPU.
    poller = Poller(lambda: _Counters(app), started=lambda s: s.get("records_in", 0) > 0,
                    done=lambda s: bool(failure) or done(s))
    thread = threading.Thread(target=target, name="kstream-bench-app", daemon=True)
    t_launch = time.perf_counter()
    thread.start()
    poller.start()
    deadline = time.monotonic() + timeout_s
    while not poller.wait(0.2):
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            poller.cancel()
            break
    stats = dict(app.stats)
    app.stop()
    thread.join(120)
    t_stopped = time.perf_counter()
    if failure:
        raise RuntimeError(f"kstream app failed: {failure[0]!r}") from failure[0]
    if poller.t_done is None or poller.t_start is None:
        raise RuntimeError(f"kstream did not finish: stats {app.stats}")
    if prof is not None and profile:
        prof.dump_stats(profile)
    return TimedRun(stats, t_launch, poller.t_start, poller.t_done, t_stopped,
                    poller.app_cpu_seconds())


class _Counters:
    """`done`/`started` read `.get(name, default)` of the app's stats; this answers for
    records_in/records_out from the engine's counters directly and asks `app.stats` for the
    rest (counters with per-task parts)."""

    __slots__ = ("_app",)

    def __init__(self, app: Any) -> None:
        self._app = app

    def get(self, name: str, default: int = 0) -> int:
        engine = self._app._engine
        if engine is None:
            return default
        if name in ("records_in", "records_out"):
            return int(getattr(engine.stats, name))
        return int(self._app.stats.get(name, default))


def engine_batches(tasks: dict[int, Any], topic: str, msgs: list[Any], batch_size: int = 1000,
                   after_batch: Callable[[int], None] | None = None) -> None:
    """Hand `msgs` to the tasks (by partition) as kstream.runtime.engine's `_process_run`
    does: in batches, each run of one partition's records to its task's run handler.
    `after_batch(records so far)` runs after each batch (e.g. a commit every N records)."""
    handlers = {p: task.run_handler(topic) for p, task in tasks.items()}
    done = 0
    for start in range(0, len(msgs), batch_size):
        batch = msgs[start:start + batch_size]
        i, end = 0, len(batch)
        while i < end:
            msg = batch[i]
            if msg.error() is not None:
                i += 1
                continue
            i = handlers[msg.partition()](batch, i)
        done += len(batch)
        if after_batch is not None:
            after_batch(done)
