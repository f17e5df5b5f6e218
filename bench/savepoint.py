"""Savepoint create and restore of N keys (default 1M): records/s of each.

    .venv/bin/python bench/savepoint.py [--keys 1000000]

Setup (not timed): a word-count app's changelog is filled with N distinct keys directly (a
counting run to 1M keys would take minutes and measure the engine, not savepoints) and the
group gets committed offsets. Timed: `create_savepoint` (read the changelog read_committed,
write the files, checksums) and `restore_savepoint` under a new application id (verify
checksums, recreate internal topics, write N changelog records and the offsets in one
transaction).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import bootstrap  # type: ignore[import-not-found]
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "savepoints" / "apps"))
from sp_apps import wordcount  # type: ignore[import-not-found]  # noqa: E402

from kstream.runtime.topics import ensure_topics  # noqa: E402
from kstream.savepoint import create_savepoint, restore_savepoint  # noqa: E402
from kstream.testing import KafkaCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    with bootstrap() as servers:
        kafka = KafkaCluster(servers)
        run = uuid.uuid4().hex[:6]
        inp = kafka.create_topic(f"bench-sp-in-{run}", 3)
        out = kafka.create_topic(f"bench-sp-out-{run}", 3)
        tmp = Path(tempfile.mkdtemp(prefix="bench-sp-"))
        app = wordcount(f"bench-sp-{run}", servers, inp, out, tmp / "state")
        app.topology.bind(app.config.application_id)
        ensure_topics(app.topology, app.config)
        changelog = f"{app.config.application_id}-word-counts-changelog"
        producer = Producer({"bootstrap.servers": servers, "linger.ms": 20,
                             "partitioner": "murmur2_random", "compression.type": "lz4"})
        t0 = time.monotonic()
        for i in range(args.keys):
            while True:
                try:
                    producer.produce(changelog, (i % 1000).to_bytes(8, "big"),
                                     f"key-{i:08d}".encode())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(120)
        print(f"setup: {args.keys} changelog records in {time.monotonic() - t0:.1f}s")
        request = ConsumerGroupTopicPartitions(app.config.application_id,
                                               [TopicPartition(inp, p, 0) for p in range(3)])
        for _attempt in range(100):  # a fresh broker's coordinator may still be loading
            done = kafka.admin.alter_consumer_group_offsets([request])[
                app.config.application_id].result(timeout=30)
            if all(tp.error is None for tp in done.topic_partitions):
                break
            time.sleep(0.2)
        t0 = time.monotonic()
        path = create_savepoint(app, tmp / "sp", say=lambda _line: None)
        create_s = time.monotonic() - t0
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"create: {args.keys} keys in {create_s:.2f}s = {args.keys / create_s:,.0f} "
              f"records/s ({size / 1e6:.0f} MB on disk)")
        fork = wordcount(f"bench-sp-fork-{run}", servers, inp, out, tmp / "fork")
        t0 = time.monotonic()
        restore_savepoint(path, fork, say=lambda _line: None)
        restore_s = time.monotonic() - t0
        print(f"restore: {args.keys} keys in {restore_s:.2f}s = {args.keys / restore_s:,.0f} "
              "records/s")
        shutil.rmtree(tmp, ignore_errors=True)
        kafka.delete_topics([inp, out, changelog,
                             f"{fork.config.application_id}-word-counts-changelog",
                             f"{app.config.application_id}-word-counts-repartition",
                             f"{fork.config.application_id}-word-counts-repartition"])


if __name__ == "__main__":
    main()
