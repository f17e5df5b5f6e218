"""State restore benchmark: changelog -> RocksDB store, with a raw consumer baseline.

    python bench/restore.py [--records 1000000] [--keys 10000,1000000] [--rss-stores 1,16]

For each key count: produce `--records` changelog records (~50-byte values) with a raw
producer, read them once with a bare confluent-kafka consumer (the ceiling), then time
`restore_stores` into a fresh RocksDB store. Then, in a separate process per entry of
`--rss-stores`, restore a 1M-key changelog spread over that many store instances
(partitions) and report peak RSS (ru_maxrss), so memory is measured without the producer.
Uses KSTREAM_BOOTSTRAP_SERVERS if set, else starts a LocalBroker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kstream.state import kv_store, restore_stores  # noqa: E402
from kstream.state.rocksdb_memory import block_cache_usage  # noqa: E402
from serdes import encode_key  # noqa: E402

VALUE = b'{"count":123456,"last":"2024-01-01T00:00:00Z","x":1}'  # 52 bytes
# Compacted like a real changelog, but not while we measure.
TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"}


@contextlib.contextmanager
def bootstrap() -> Iterator[str]:
    env = os.environ.get("KSTREAM_BOOTSTRAP_SERVERS")
    if env:
        yield env
        return
    from kstream.broker import LocalBroker

    with LocalBroker() as broker:
        yield broker.bootstrap_servers


def create_topic(servers: str, partitions: int) -> str:
    name = f"bench-restore-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": servers})
    admin.create_topics([NewTopic(name, partitions, 1, config=TOPIC_CONFIG)])[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if md and md.error is None and all(p.leader >= 0 for p in md.partitions.values()):
            return name
    raise TimeoutError(f"no leaders for {name}")


def delete_topic(servers: str, name: str) -> None:
    with contextlib.suppress(Exception):
        AdminClient({"bootstrap.servers": servers}).delete_topics([name])[name].result(30)


def produce(servers: str, topic: str, records: int, keys: int, partitions: int) -> float:
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 50,
                         "batch.size": 1 << 20})  # uncompressed, like the engine
    encoded = [encode_key(f"key-{k:07d}") for k in range(keys)]
    started = time.perf_counter()
    for i in range(records):
        k = i % keys
        while True:
            try:
                producer.produce(topic, VALUE, encoded[k], k % partitions)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise RuntimeError("produce did not finish")
    return time.perf_counter() - started


def raw_read(servers: str, topic: str, partitions: int) -> tuple[int, float]:
    """The same read a restore does, with nothing applied: what Kafka alone costs."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "bench-raw",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed",
                         # the fetch settings restore_stores uses
                         "max.partition.fetch.bytes": 2 << 20, "fetch.max.bytes": 8 << 20,
                         "queued.min.messages": 20_000, "queued.max.messages.kbytes": 8192,
                         "fetch.queue.backoff.ms": 10})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    started = time.perf_counter()
    count, at_end = 0, 0
    deadline = time.monotonic() + 300
    while at_end < partitions and time.monotonic() < deadline:
        for msg in consumer.consume(10_000, 0.2):
            err = msg.error()
            if err is None:
                msg.key()
                msg.value()
                count += 1
            elif err.code() == KafkaError._PARTITION_EOF:
                at_end += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return count, elapsed


def peak_rss_mb() -> float:
    """Peak RSS of this process image. ru_maxrss would also count the parent's peak from
    before fork/exec (Linux keeps it across execve), so prefer VmHWM where it exists."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def restore_into_rocksdb(servers: str, topic: str, partitions: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp:
        builder = kv_store("bench", value_serde="bytes")
        stores = [builder.build(Path(tmp) / f"0_{p}", p, topic) for p in range(partitions)]
        rss_before = peak_rss_mb()
        report = restore_stores(servers, stores, timeout_s=600)
        count = sum(s.approximate_count() for s in stores)
        for s in stores:
            s.close()
    return {"records": report.records, "seconds": report.seconds,
            "records_per_s": report.records_per_s, "keys_estimate": count,
            "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(),
            "block_cache_mb": block_cache_usage() / 2**20}


def rss_child(servers: str, topic: str, partitions: int) -> None:
    """Run in a fresh process: restore, report peak RSS."""
    result = restore_into_rocksdb(servers, topic, partitions)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", default="10000,1000000")
    parser.add_argument("--rss-stores", default="1,16")
    parser.add_argument("--child", nargs=3, metavar=("SERVERS", "TOPIC", "PARTITIONS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rss_child(args.child[0], args.child[1], int(args.child[2]))
        return
    with bootstrap() as servers:
        print(f"broker {servers}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        for keys in (int(k) for k in args.keys.split(",")):
            topic = create_topic(servers, 1)
            try:
                secs = produce(servers, topic, args.records, keys, 1)
                n, raw_secs = raw_read(servers, topic, 1)
                r = restore_into_rocksdb(servers, topic, 1)
            finally:
                delete_topic(servers, topic)
            raw_rate = n / raw_secs
            print(f"records={args.records:,} keys={keys:,}: produce {args.records / secs:,.0f}/s; "
                  f"raw consumer read {raw_rate:,.0f} records/s; restore_stores -> RocksDB "
                  f"{r['records_per_s']:,.0f} records/s ({r['records']:,} records in "
                  f"{r['seconds']:.2f}s, {r['records_per_s'] / raw_rate:.2f}x the raw read)")
        for stores in (int(s) for s in args.rss_stores.split(",")):
            topic = create_topic(servers, stores)
            try:
                produce(servers, topic, 1_000_000, 1_000_000, stores)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", servers, topic, str(stores)],
                    check=True, capture_output=True, text=True, timeout=900).stdout
            finally:
                delete_topic(servers, topic)
            r = json.loads(out.strip().splitlines()[-1])
            print(f"1M keys in {stores} RocksDB store(s): restore {r['records_per_s']:,.0f} "
                  f"records/s; peak RSS {r['peak_rss_mb']:.0f} MB (before restore "
                  f"{r['rss_before_mb']:.0f} MB); shared block cache in use "
                  f"{r['block_cache_mb']:.0f} MB")


if __name__ == "__main__":
    main()
