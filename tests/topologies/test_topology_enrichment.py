"""enrichment: orders x customers by foreign key x a global product catalogue. Exact results
in the driver (a hand-written story, and the demo's sample against its model), the same final
table on the broker, and `kstream demo enrichment`."""

from __future__ import annotations

from typing import Any

from topology_helpers import run_demo

from kstream import App, Record
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from serdes import JsonSerde, StringSerde
from topologies import enrichment as e

PARTITIONS = e.DEMO.inputs


def pipe_all(driver: TopologyTestDriver, records: list[e.SampleRecord]) -> None:
    inputs = {t: driver.input_topic(t, StringSerde(), JsonSerde()) for t in PARTITIONS}
    for topic, key, value, ts in records:
        inputs[topic].pipe(key, value, ts)


def test_a_story_in_the_driver() -> None:
    ann = {"name": "Ann", "tier": "gold"}
    o1 = {"id": "o1", "customer": "c1", "sku": "pen", "qty": 3}
    with TopologyTestDriver(e.build(), partitions=PARTITIONS) as driver:
        out = driver.output_topic(e.ENRICHED, StringSerde(), JsonSerde())
        pipe_all(driver, [(e.PRODUCTS, "pen", {"title": "Pen", "price": 2}, 0),
                          (e.ORDERS, "o1", o1, 1)])  # customer c1 unknown yet
        assert out.read_key_values_to_list() == [
            ("o1", {**o1, "customer_name": None, "tier": None, "title": "Pen", "total": 6})]
        pipe_all(driver, [(e.CUSTOMERS, "c1", ann, 2),  # arrives later: the order updates
                          (e.PRODUCTS, "pen", {"title": "Pen", "price": 3}, 3)])  # no output
        assert out.read_key_values_to_list() == [
            ("o1", {**o1, "customer_name": "Ann", "tier": "gold", "title": "Pen", "total": 6})]
        moved = {**o1, "customer": "c2", "sku": "ink"}  # another customer, unknown product
        pipe_all(driver, [(e.ORDERS, "o1", moved, 4), (e.CUSTOMERS, "c1", None, 5),
                          (e.ORDERS, "o1", None, 6)])
        # The new customer's (unknown) answer; c1's delete then touches no order, and the
        # order's delete is dropped before the global join (no value to enrich).
        unknown = {**moved, "customer_name": None, "tier": None, "title": None, "total": None}
        assert out.read_key_values_to_list() == [("o1", unknown)]


def final_table(records: list[Record]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for r in records:
        table[r.key] = r.value
    return table


def test_the_sample_in_the_driver_equals_the_model() -> None:
    sample = e.generate(600)
    with TopologyTestDriver(e.build(), partitions=PARTITIONS) as driver:
        pipe_all(driver, sample)
        got = final_table(driver.output_topic(e.ENRICHED, StringSerde(), JsonSerde())
                          .read_records_to_list())
    want = e.expected(sample)
    assert {k: got[k] for k in want} == want  # deleted orders keep their last value


def test_on_the_broker_and_the_demo(kafka: KafkaCluster, tmp_path: Any) -> None:
    sample = e.generate(600)
    topics = {t: kafka.create_topic(partitions=n) for t, n in PARTITIONS.items()}
    out = kafka.create_topic(partitions=3)
    for topic in PARTITIONS:
        rows = [(k.encode(), None if v is None else JsonSerde().serialize(v), ts)
                for t, k, v, ts in sample if t == topic]
        kafka.produce(topics[topic], rows)
    app = App(e.build(topics[e.ORDERS], topics[e.CUSTOMERS], topics[e.PRODUCTS], out),
              application_id=kafka.unique_name("enrichment"),
              bootstrap_servers=kafka.bootstrap_servers, state_dir=str(tmp_path),
              processing_guarantee="exactly_once", commit_interval_ms=100)
    want = e.expected(sample)
    got: dict[str, Any] = {}

    def converged() -> bool:
        got.clear()
        for rec in kafka.read_topic(out, timeout=60):
            got[rec.key.decode()] = JsonSerde().deserialize(rec.value)  # type: ignore[union-attr]
        return {k: got.get(k) for k in want} == want

    with running_app(app):
        wait_until(converged, 120, "the enriched orders to equal the model", interval=1.0)

    proc = run_demo(kafka, "enrichment", 400)
    assert "produced 400 sample records" in proc.stdout
    sample = e.generate(400)
    final = e.expected(sample)
    summary = e.summarize({e.ENRICHED: [Record(k, v, 0) for k, v in final.items()]})
    for line in summary.splitlines()[1:]:
        assert line in proc.stdout, (line, proc.stdout)
