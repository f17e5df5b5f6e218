"""What the reference-topology tests share: producing as the driver partitions, `kstream demo`.

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

from kstream.testing import KafkaCluster
from kstream.testing.driver import partition_for_key

ROOT = Path(__file__).parents[2]


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


def run_demo(kafka: KafkaCluster, name: str, records: int) -> subprocess.CompletedProcess[str]:
    """`kstream demo NAME --records N` as a new user runs it (against the session's broker);
    asserts it succeeded, showing the end of its stderr if not."""
    env = {**os.environ, "KSTREAM_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    proc = subprocess.run([sys.executable, "-m", "kstream.cli", "demo", name,
                           "--records", str(records)], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
