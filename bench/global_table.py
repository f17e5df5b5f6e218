"""Global tables: bootstrap rate, and stream x global-table lookups against a raw loop.

    python bench/global_table.py [--catalogue 1000000] [--products 100000] [--orders 500000]
                                 [--partitions 4] [--repeat 1] [--only bootstrap|lookup]
                                 [--backend rocksdb|memory]

1. Bootstrap: `--catalogue` product records (~70-byte JSON, `--products` distinct keys,
   string keys) in a topic of `--partitions` partitions. A bare confluent-kafka consumer reads
   them once (the ceiling), then the engine's GlobalStateMaintainer.bootstrap (what an
   instance runs before it joins its group) reads them into a fresh RocksDB global store.
2. Lookups, exactly-once, one transaction every 100 ms on both sides: `--orders` orders
   ({"id", "sku"}) joined with the products table by sku, {"id", "sku", "title", "price"} to
   an output topic.
   * raw loop: read the products topic into a dict first (not timed), then consume(1000) ->
     orjson.loads -> dict lookup -> orjson.dumps -> produce, transactions with offsets;
   * kstream: `orders.join(products, lambda _id, o: o["sku"], joiner).to(out)` with
     `builder.global_table(products_topic, "string", "json", name="products")`.
   Throughput = orders / (last order processed - first batch consumed); the bootstrap and the
   group join are excluded on the kstream side as the dict load is on the raw side. Outputs
   are read back read_committed and checked: one per order, each with its product.

Uses KSTREAM_BOOTSTRAP_SERVERS if set, else starts a LocalBroker.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    bootstrap,
    count_topic,
    create_topics,
    machine_note,
    median,
    produce_keyed,
    run_app_timed,
    unique,
)

from kstream import App, StreamBuilder  # noqa: E402
from kstream.runtime.global_state import GlobalStateMaintainer  # noqa: E402
from serdes import JsonSerde, StringSerde  # noqa: E402

RUN_TIMEOUT_S = 1800.0
COMMIT_EVERY_S = 0.1


def product(i: int, products: int) -> tuple[bytes, bytes]:
    sku = i % products
    return (f"sku{sku}".encode(),
            orjson.dumps({"title": f"product {sku} v{i // products}", "price": sku % 997,
                          "category": f"c{sku % 50}"}))


def order(i: int, products: int) -> tuple[bytes, bytes]:
    return f"o{i}".encode(), orjson.dumps({"id": i, "sku": f"sku{(i * 7919) % products}"})


def joiner(o: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    return {"id": o["id"], "sku": o["sku"], "title": p["title"], "price": p["price"]}


# -- 1. bootstrap ---------------------------------------------------------------------------------
def raw_read(servers: str, topic: str, partitions: int) -> tuple[int, float]:
    consumer = Consumer({"bootstrap.servers": servers, "group.id": unique("bench-raw"),
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed",
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


def bench_bootstrap(servers: str, topic: str, partitions: int, expected: int) -> dict[str, Any]:
    b = StreamBuilder()
    b.global_table(topic, "string", "json", name="products")
    topology = b.build()
    with tempfile.TemporaryDirectory(prefix="bench-global-") as tmp:
        maintainer = GlobalStateMaintainer(topology, Path(tmp))
        try:
            started = time.perf_counter()
            report = maintainer.bootstrap(servers, {topic: partitions}, 600, {},
                                          should_stop=lambda: False)
            wall = time.perf_counter() - started
            keys = sum(1 for _ in maintainer.stores["products"].all())
        finally:
            maintainer.close()
    if report.records != expected:
        raise RuntimeError(f"bootstrap read {report.records} records, expected {expected}")
    return {"records": report.records, "seconds": wall, "rate": report.records / wall,
            "keys": keys}


# -- 2. lookups -----------------------------------------------------------------------------------
def load_dict(servers: str, topic: str) -> dict[bytes, Any]:
    table: dict[bytes, Any] = {}

    def put(key: bytes | None, value: bytes | None) -> None:
        if key is not None:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = orjson.loads(value)

    count_topic(servers, topic, 0, 300, check=put)
    return table


def run_raw(servers: str, products_topic: str, orders_topic: str, n: int,
            partitions: int) -> dict[str, Any]:
    table = {k.decode(): v for k, v in load_dict(servers, products_topic).items()}
    out = unique("raw-global-out")
    create_topics(servers, [out], partitions)
    consumer = Consumer({
        "bootstrap.servers": servers, "group.id": unique("raw-global-group"),
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        "partition.assignment.strategy": "range"})
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5,
                         "partitioner": "murmur2_random", "enable.idempotence": True,
                         "transactional.id": unique("raw-global-txn"),
                         "transaction.timeout.ms": 10_000})
    producer.init_transactions(30)
    loads, dumps, produce, get = orjson.loads, orjson.dumps, producer.produce, table.get
    in_txn = False

    def commit() -> None:
        nonlocal in_txn
        if not in_txn:
            return
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        in_txn = False

    consumer.subscribe([orders_topic])
    consumed = 0
    t_first: float | None = None
    next_commit = 0.0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while consumed < n and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.1)
        if not msgs:
            continue
        if t_first is None:
            t_first = time.perf_counter()
            next_commit = time.monotonic() + COMMIT_EVERY_S
        if not in_txn:
            producer.begin_transaction()
            in_txn = True
        for msg in msgs:
            if msg.error() is not None:
                raise RuntimeError(f"raw loop: consumer error {msg.error()}")
            o = loads(msg.value())
            p = get(o["sku"])
            if p is None:
                continue
            value = dumps(joiner(o, p))
            try:
                produce(out, value, msg.key())
            except BufferError:
                producer.poll(0.05)
                produce(out, value, msg.key())
        consumed += len(msgs)
        producer.poll(0)
        if consumed < n and time.monotonic() >= next_commit:
            commit()
            next_commit = time.monotonic() + COMMIT_EVERY_S
    t_last = time.perf_counter()
    commit()
    consumer.close()
    if t_first is None or consumed < n:
        raise RuntimeError(f"raw loop consumed {consumed}/{n}")
    return {"side": "raw", "out": out, "rate": consumed / (t_last - t_first),
            "seconds": t_last - t_first}


BACKEND = "rocksdb"


def run_kstream(servers: str, products_topic: str, orders_topic: str, n: int,
                partitions: int) -> dict[str, Any]:
    out = unique("ks-global-out")
    create_topics(servers, [out], partitions)
    b = StreamBuilder()
    products = b.global_table(products_topic, "string", "json", name="products",
                              backend=BACKEND)
    (b.stream(orders_topic, StringSerde(), JsonSerde())
     .join(products, lambda _id, o: o["sku"], joiner)
     .to(out, StringSerde(), JsonSerde()))
    with tempfile.TemporaryDirectory(prefix="bench-global-ks-") as state_dir:
        app = App(b, application_id=unique("bench-global"), bootstrap_servers=servers,
                  processing_guarantee="exactly_once", state_dir=state_dir)
        run = run_app_timed(app, lambda s: s.get("records_in", 0) >= n, RUN_TIMEOUT_S)
    return {"side": "kstream", "out": out, "rate": n / run.seconds, "seconds": run.seconds,
            "global_restored": run.stats.get("global_restored")}


def verify(servers: str, out: str, n: int, products: int, table: dict[bytes, Any]) -> None:
    seen: dict[bytes, Any] = {}

    def check(key: bytes | None, value: bytes | None) -> None:
        assert key is not None and value is not None
        seen[key] = orjson.loads(value)

    count = count_topic(servers, out, n, 300, check=check)
    if count != n or len(seen) != n:
        raise RuntimeError(f"{out}: {count} records, {len(seen)} keys, expected {n}")
    for i in range(0, n, 997):
        key, value = order(i, products)
        o = orjson.loads(value)
        want = joiner(o, table[o["sku"].encode()])
        if seen[key] != want:
            raise RuntimeError(f"{out}: {key!r} is {seen[key]}, expected {want}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=500_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", choices=("bootstrap", "lookup"))
    parser.add_argument("--backend", choices=("rocksdb", "memory"), default="rocksdb",
                        help="the global store's backend in the lookup run")
    args = parser.parse_args()
    global BACKEND
    BACKEND = args.backend
    with bootstrap() as servers:
        print(f"broker {servers}; {machine_note()}")
        if args.only != "lookup":
            topic = unique("bench-global-catalogue")
            create_topics(servers, [topic], args.partitions)
            produce_keyed(servers, topic, (product(i, args.products)
                                           for i in range(args.catalogue)))
            rates = []
            for _ in range(args.repeat):
                n, secs = raw_read(servers, topic, args.partitions)
                r = bench_bootstrap(servers, topic, args.partitions, args.catalogue)
                rates.append((n / secs, r["rate"]))
                print(f"bootstrap of {r['records']:,} records ({r['keys']:,} keys, "
                      f"{args.partitions} partitions): {r['rate']:,.0f} records/s "
                      f"({r['seconds']:.2f} s, from the call to the end, metadata included); "
                      f"raw consumer read {n / secs:,.0f} records/s; "
                      f"bootstrap / raw {r['rate'] / (n / secs):.2f}")
            if args.repeat > 1:
                print(f"median bootstrap {median([b for _, b in rates]):,.0f} records/s")
        if args.only != "bootstrap":
            products_topic = unique("bench-global-products")
            orders_topic = unique("bench-global-orders")
            create_topics(servers, [products_topic], 1)
            create_topics(servers, [orders_topic], args.partitions)
            produce_keyed(servers, products_topic,
                          (product(i, args.products) for i in range(args.products)))
            produce_keyed(servers, orders_topic,
                          (order(i, args.products) for i in range(args.orders)))
            table = load_dict(servers, products_topic)
            ratios = []
            for rep in range(args.repeat):
                sides = [run_raw, run_kstream] if rep % 2 == 0 else [run_kstream, run_raw]
                results = {}
                for side in sides:
                    res = side(servers, products_topic, orders_topic, args.orders,
                               args.partitions)
                    verify(servers, res["out"], args.orders, args.products, table)
                    results[res["side"]] = res
                ratio = results["kstream"]["rate"] / results["raw"]["rate"]
                ratios.append(ratio)
                raw_rate, ks_rate = results["raw"]["rate"], results["kstream"]["rate"]
                print(f"lookups ({BACKEND} global store), exactly-once, {args.orders:,} orders "
                      f"x {args.products:,} products: raw loop + dict {raw_rate:,.0f} rec/s, "
                      f"kstream global-table join {ks_rate:,.0f} rec/s: "
                      f"{ratio:.2f}x (outputs verified)")
            if args.repeat > 1:
                print(f"median ratio {median(ratios):.2f}x")


if __name__ == "__main__":
    main()
