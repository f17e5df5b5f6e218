"""The join family on a real broker: repartitions created and sized by kstream, results equal
to the TopologyTestDriver's for the same input.

One app: orders re-keyed by customer and joined with the customers table (automatic
repartition), accounts re-grouped per city (table group_by, its repartition topic carrying
removals and additions), and a cogroup of orders and re-keyed clicks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kstream import App, StreamBuilder
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from serdes import Int64Serde, JsonSerde, StringSerde

PARTITIONS = 3


def build(t: dict[str, str]) -> StreamBuilder:
    b = StreamBuilder()
    customers = b.table(t["customers"], StringSerde(), JsonSerde(), name="customers")
    orders = b.stream(t["orders"], StringSerde(), JsonSerde())
    (orders.select_key(lambda _id, o: o["customer"])
     .left_join(customers, lambda o, c: {"order": o["id"], "name": c and c["name"]},
                name="by-customer")
     .to(t["enriched"], StringSerde(), JsonSerde()))
    (b.table(t["accounts"], StringSerde(), JsonSerde(), name="accounts")
     .group_by(lambda _id, a: (a["city"], a), key_serde=StringSerde())
     .count("per-city").to_stream().to(t["cities"], StringSerde(), Int64Serde()))
    clicks = (b.stream(t["clicks"], StringSerde(), JsonSerde())
              .group_by(lambda _s, c: c["customer"], key_serde=StringSerde()))
    (orders.group_by_key()
     .cogroup(lambda _c, o, agg: {**agg, "orders": agg["orders"] + 1})
     .cogroup(clicks, lambda _c, _click, agg: {**agg, "clicks": agg["clicks"] + 1})
     .aggregate(lambda: {"orders": 0, "clicks": 0}, "activity")
     .to_stream().to(t["activity"], StringSerde(), JsonSerde()))
    return b


def inputs() -> dict[str, list[tuple[str, Any]]]:
    customers = [(f"c{i}", {"name": f"name{i}"}) for i in range(40)]
    orders = [(f"o{i}", {"id": i, "customer": f"c{i % 50}"}) for i in range(300)]
    accounts = []
    for i in range(200):  # accounts move between cities, some are closed
        acct = f"a{i % 60}"
        accounts.append((acct, None if i % 17 == 0 else {"city": f"city{i % 7}"}))
    clicks = [(f"s{i}", {"customer": f"c{i % 45}"}) for i in range(250)]
    return {"customers": customers, "orders": orders, "accounts": accounts, "clicks": clicks}


def final(records: list[tuple[str, Any]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, value in records:
        table[key] = value
    return table


def test_joins_on_kafka_match_the_driver(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                         tmp_path: Path) -> None:
    data = inputs()
    names = ["customers", "orders", "accounts", "clicks", "enriched", "cities", "activity"]
    logical = {n: n for n in names}
    with TopologyTestDriver(build(logical), partitions={n: PARTITIONS for n in data}) as driver:
        # The table first, so every order finds what it will find on the broker.
        for name in ("customers", "accounts", "orders", "clicks"):
            pipe = driver.input_topic(name, StringSerde(), JsonSerde())
            for key, value in data[name]:
                pipe.pipe(key, value)
        want_enriched = sorted((r.key, r.value["order"], r.value["name"]) for r in
                               driver.output_topic("enriched", StringSerde(),
                                                   JsonSerde()).read_records_to_list())
        want_cities = driver.output_topic("cities", StringSerde(),
                                          Int64Serde()).read_key_values_to_dict()
        want_activity = driver.output_topic("activity", StringSerde(),
                                            JsonSerde()).read_key_values_to_dict()

    topics = {n: topic_factory(partitions=PARTITIONS, prefix=f"j-{n}") for n in names}
    app_id = kafka.unique_name("joins")
    app = App(build(topics), application_id=app_id, bootstrap_servers=kafka.bootstrap_servers,
              processing_guarantee="exactly_once", state_dir=tmp_path)
    with running_app(app):
        for name in ("customers", "accounts"):
            kafka.produce(topics[name], ((k.encode(), None if v is None else JsonSerde()
                                          .serialize(v)) for k, v in data[name]))
        def tables_read() -> bool:
            return all(sum(max(0, o) for o in kafka.committed_offsets(app_id, topics[name])
                           .values()) == len(data[name]) for name in ("customers", "accounts"))

        wait_until(tables_read, 60, "the tables to be read")
        for name in ("orders", "clicks"):
            kafka.produce(topics[name], ((k.encode(), JsonSerde().serialize(v))
                                         for k, v in data[name]))
        enriched = kafka.read_topic(topics["enriched"], min_count=300, timeout=90)
        kafka.read_topic(topics["activity"], min_count=550, timeout=90)
    got_enriched = sorted((r.key.decode(), *JsonSerde().deserialize(r.value).values())  # type: ignore[union-attr]
                          for r in enriched)
    assert got_enriched == want_enriched
    cities = final([(r.key.decode(), Int64Serde().deserialize(r.value))  # type: ignore[union-attr]
                    for r in kafka.read_topic(topics["cities"], timeout=60)])
    assert cities == want_cities
    activity = final([(r.key.decode(), JsonSerde().deserialize(r.value))  # type: ignore[union-attr]
                      for r in kafka.read_topic(topics["activity"], timeout=60)])
    assert activity == want_activity
    internal = set(kafka.admin.list_topics(timeout=10).topics)
    for name in ("by-customer", "per-city", "activity-cogroup-1"):
        assert f"{app_id}-{name}-repartition" in internal
