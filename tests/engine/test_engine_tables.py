"""Tables on the real broker: a table-backed lookup (stream-table join) gives exact results."""

from __future__ import annotations

from pathlib import Path

import orjson

from kstream import App, StreamBuilder
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from serdes import JsonSerde, StringSerde


def build(customers: str, orders: str, out: str) -> StreamBuilder:
    b = StreamBuilder()
    table = b.table(customers, StringSerde(), JsonSerde(), name="customers")
    vip = table.filter(lambda _k, c: c["tier"] == "gold")
    vip.to_stream().to(f"{out}-vip", key_serde=StringSerde(), value_serde=JsonSerde())
    (b.stream(orders, StringSerde(), JsonSerde())
     .left_join(table, lambda order, customer: {
         "order": order["id"], "name": customer["name"] if customer else None})
     .to(out, key_serde=StringSerde(), value_serde=JsonSerde()))
    return b


def test_table_lookup_in_the_driver() -> None:
    with TopologyTestDriver(build("customers", "orders", "out")) as driver:
        customers = driver.input_topic("customers", StringSerde(), JsonSerde())
        orders = driver.input_topic("orders", StringSerde(), JsonSerde())
        customers.pipe("c1", {"name": "Ada", "tier": "gold"})
        orders.pipe("c1", {"id": 1})
        orders.pipe("c2", {"id": 2})
        customers.pipe("c1", {"name": "Ada L.", "tier": "silver"})
        customers.pipe("c2", {"name": "Bob", "tier": "gold"})
        orders.pipe("c1", {"id": 3})
        orders.pipe("c2", {"id": 4})
        customers.pipe("c2", None)  # tombstone: deleted from the table
        orders.pipe("c2", {"id": 5})
        out = driver.output_topic("out", StringSerde(), JsonSerde())
        assert out.read_key_values_to_list() == [
            ("c1", {"order": 1, "name": "Ada"}), ("c2", {"order": 2, "name": None}),
            ("c1", {"order": 3, "name": "Ada L."}), ("c2", {"order": 4, "name": "Bob"}),
            ("c2", {"order": 5, "name": None})]
        vip = driver.output_topic("out-vip", StringSerde(), JsonSerde())
        assert vip.read_key_values_to_list() == [
            ("c1", {"name": "Ada", "tier": "gold"}), ("c1", None),
            ("c2", {"name": "Bob", "tier": "gold"}), ("c2", None)]
        assert driver.get_store("customers").get("c1") == {"name": "Ada L.", "tier": "silver"}


def test_table_lookup_on_kafka(kafka: KafkaCluster, topic_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    customers, orders = topic_factory(partitions=2), topic_factory(partitions=2)
    out = topic_factory(partitions=2)
    kafka.create_topic(f"{out}-vip", 2)
    kafka.produce(customers, ((f"c{i}".encode(), orjson.dumps(
        {"name": f"name{i}", "tier": "gold" if i % 2 else "silver"})) for i in range(100)))
    app = App(build(customers, orders, out), application_id=kafka.unique_name("lookup"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        # The table is complete before orders arrive: wait until it has been materialised.
        kafka.read_topic(f"{out}-vip", min_count=50, timeout=60)
        kafka.produce(orders, ((f"c{i % 120}".encode(), orjson.dumps({"id": i}))
                               for i in range(1000)))
        records = kafka.read_topic(out, min_count=1000, timeout=60)
    got = sorted((r.key.decode(), orjson.loads(r.value)["order"], orjson.loads(r.value)["name"])  # type: ignore[union-attr, arg-type]
                 for r in records)
    want = sorted((f"c{i % 120}", i, f"name{i % 120}" if i % 120 < 100 else None)
                  for i in range(1000))
    assert got == want
