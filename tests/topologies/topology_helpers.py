"""What the reference-topology tests share: producing as the driver partitions (all at once, or
a step of event time at a time like live traffic), `kstream demo`.

A plain module (imported as `topology_helpers`, like tests/engine/engine_helpers.py) rather
than conftest.py: every test directory's conftest is a module named `conftest`, so importing
functions from one depends on which directory pytest loaded last.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from kstream.testing import KafkaCluster, RunningApp, wait_until
from kstream.testing.driver import partition_for_key

ROOT = Path(__file__).parents[2]
SampleRecord = tuple[str, str, Any, int]  # (topic, key, JSON value, timestamp ms)


def produce_like_driver(kafka: KafkaCluster, topic: str, partitions: int,
                        sample: Iterable[tuple[str, str, Any, int]]) -> None:
    """Produce `generate()` sample records (topic, key, JSON value, timestamp) to the partition
    the TopologyTestDriver picks (murmur2, as Java clients), in sample order per partition, so
    per-task stream time, and with it which windows close and which records are late, matches
    the driver's run."""
    by_partition: dict[int, list[tuple[bytes, bytes, int]]] = {}
    for _, key, value, ts in sample:
        kb = key.encode()
        by_partition.setdefault(partition_for_key(kb, partitions), []).append(
            (kb, orjson.dumps(value), ts))
    for partition, rows in by_partition.items():
        kafka.produce(topic, rows, partition=partition)


def time_steps(sample: Iterable[SampleRecord], step_ms: int) -> list[list[SampleRecord]]:
    """The sample cut into consecutive steps of `step_ms` of event time (counted from its
    earliest record), each step in sample order: records out of order within a step stay so,
    and no record is ever more than `step_ms` behind one of an earlier step."""
    records = list(sample)
    if not records:
        return []
    first = min(ts for *_, ts in records)
    steps: dict[int, list[SampleRecord]] = {}
    for record in records:
        steps.setdefault((record[3] - first) // step_ms, []).append(record)
    return [steps[n] for n in sorted(steps)]


def produce_live(kafka: KafkaCluster, run: RunningApp, topics: dict[str, str], partitions: int,
                 steps: Iterable[list[SampleRecord]], timeout: float = 60.0) -> int:
    """Produce each step (topic names mapped through `topics`, to the partition the driver
    picks), then wait until the running app has consumed everything so far; returns the count.

    Inputs reach the app a little at a time, as live traffic does, so which records a join or
    window sees as late depends on the records' times, not on how the broker's fetches happen
    to interleave several input topics (a pre-filled backlog of one topic can be consumed
    whole before the other, moving stream time hours ahead). A step no longer than the grace
    period keeps every record of the step on time, whatever the order it is consumed in.
    """
    producer = Producer(kafka.config(**{"enable.idempotence": True, "linger.ms": 5}))
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    sent = 0
    for step in steps:
        for topic, key, value, ts in step:
            kb = key.encode()
            vb = None if value is None else orjson.dumps(value)
            producer.produce(topics[topic], key=kb, value=vb, timestamp=ts,
                             partition=partition_for_key(kb, partitions),
                             on_delivery=on_delivery)
        assert producer.flush(timeout) == 0 and not errors, errors[:3]
        sent += len(step)

        def consumed(n: int = sent) -> bool:
            return run.error is not None or run.app.stats.get("records_in", 0) >= n

        wait_until(consumed, timeout, f"the app to consume {sent} records")
        if run.error is not None:
            raise run.error
    return sent


def run_demo(kafka: KafkaCluster, name: str, records: int) -> subprocess.CompletedProcess[str]:
    """`kstream demo NAME --records N` as a new user runs it (against the session's broker);
    asserts it succeeded, showing the end of its stderr if not."""
    env = {**os.environ, "KSTREAM_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    proc = subprocess.run([sys.executable, "-m", "kstream.cli", "demo", name,
                           "--records", str(records)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
