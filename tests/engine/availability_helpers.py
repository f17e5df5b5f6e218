"""Helpers of the availability tests: a paced load generator and what an instance's log says
about its assignments, rebalances and restores."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import Producer

from kstream.testing import KafkaCluster

ACCOUNTS = 600
ASSIGN = re.compile(r"event=assign partitions=(\S+)")
REVOKE = re.compile(r"event=revoke partitions=")
RESTORED = re.compile(r"event=restored stores=(\d+) from_scratch=(\d+) records=(\d+)")


def record(i: int) -> tuple[bytes, bytes]:
    return str(i).encode(), orjson.dumps({"id": i, "account": f"a{i % ACCOUNTS}",
                                          "amount": i % 97})


def by_account(i: int) -> tuple[bytes, bytes]:
    """The same records keyed by account (no repartition needed to count them)."""
    key, value = record(i)
    return f"a{i % ACCOUNTS}".encode(), value


def truth(count: int) -> dict[str, tuple[int, int]]:
    totals: dict[str, list[int]] = {}
    for i in range(count):
        t = totals.setdefault(f"a{i % ACCOUNTS}", [0, 0])
        t[0] += 1
        t[1] += i % 97
    return {k: (c, s) for k, (c, s) in totals.items()}


class Load:
    """Produces records 0, 1, 2, … to `topic` in chunks of `chunk` every `period_s` until
    stopped; `produced` is exact once `stop()` returned."""

    def __init__(self, kafka: KafkaCluster, topic: str, chunk: int, period_s: float,
                 make: Callable[[int], tuple[bytes, bytes]] = record,
                 one_producer: bool = False) -> None:
        """`one_producer`: one producer for the whole run. By default every chunk goes through
        KafkaCluster.produce, a new idempotent producer per call, 0.5-1 s each on a loaded
        host: the load comes in bursts and records are stamped up to a second before they
        reach Kafka (which the tests reading the whole output topic rely on: between bursts
        their reader reaches the end)."""
        self.kafka, self.topic, self.chunk, self.period_s = kafka, topic, chunk, period_s
        self.make = make
        self._producer = Producer(kafka.config(**{
            "enable.idempotence": True, "linger.ms": 5,
            "partitioner": "murmur2_random"})) if one_producer else None
        self.produced = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, first: int = 0) -> Load:
        if first:
            self.kafka.produce(self.topic, (self.make(i) for i in range(first)))
            self.produced = first
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):  # pacing, not synchronisation
            start = self.produced
            if self._producer is None:
                self.kafka.produce(self.topic,
                                   (self.make(i) for i in range(start, start + self.chunk)))
            else:
                for i in range(start, start + self.chunk):
                    key, value = self.make(i)
                    self._producer.produce(self.topic, value, key)
                if self._producer.flush(60):
                    raise RuntimeError(f"load to {self.topic}: records not acknowledged")
            self.produced = start + self.chunk

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "load generator did not stop"
        return self.produced


def log_text(path: Path) -> str:
    return path.read_text(errors="replace")


def assignments(path: Path, topic: str) -> list[set[int]]:
    """Every assignment the log shows, in order, as partition numbers of `topic`."""
    out = []
    for line in ASSIGN.findall(log_text(path)):
        out.append({int(p.rsplit("[", 1)[1].rstrip("]")) for p in line.split(",")
                    if p.rsplit("[", 1)[0] == topic})
    return out


def rebalance_events(path: Path) -> int:
    """Assignments plus revocations this instance went through."""
    text = log_text(path)
    return len(ASSIGN.findall(text)) + len(REVOKE.findall(text))


def restores(path: Path) -> list[tuple[int, int, int]]:
    """(stores, stores restored from scratch, records) of every restore in the log."""
    return [(int(a), int(b), int(c)) for a, b, c in RESTORED.findall(log_text(path))]
