"""Cogroup: several grouped streams folded into one aggregate per key in one store."""

from __future__ import annotations

from typing import Any

from kstream import StreamBuilder
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde


def customer_activity() -> StreamBuilder:
    """Per customer: orders counted and summed, refunds subtracted, clicks counted. Clicks
    are keyed by session and re-keyed by customer (so they are repartitioned)."""
    b = StreamBuilder()
    orders = b.stream("orders", StringSerde(), JsonSerde()).group_by_key()
    refunds = b.stream("refunds", StringSerde(), JsonSerde()).group_by_key()
    clicks = (b.stream("clicks", StringSerde(), JsonSerde())
              .group_by(lambda _session, c: c["customer"], key_serde=StringSerde()))

    def order(_c: str, o: dict[str, Any], agg: dict[str, int]) -> dict[str, int]:
        return {**agg, "orders": agg["orders"] + 1, "spent": agg["spent"] + o["amount"]}

    def refund(_c: str, r: dict[str, Any], agg: dict[str, int]) -> dict[str, int]:
        return {**agg, "spent": agg["spent"] - r["amount"]}

    def click(_c: str, _click: dict[str, Any], agg: dict[str, int]) -> dict[str, int]:
        return {**agg, "clicks": agg["clicks"] + 1}

    (orders.cogroup(order).cogroup(refunds, refund).cogroup(clicks, click)
     .aggregate(lambda: {"orders": 0, "spent": 0, "clicks": 0}, "activity")
     .to_stream().to("activity", StringSerde(), JsonSerde()))
    return b


def test_three_streams_one_aggregate() -> None:
    with TopologyTestDriver(customer_activity(), application_id="shop",
                            partitions={"orders": 2, "refunds": 2, "clicks": 3}) as driver:
        assert driver.partition_count("shop-activity-cogroup-2-repartition") == 2
        orders = driver.input_topic("orders", StringSerde(), JsonSerde())
        refunds = driver.input_topic("refunds", StringSerde(), JsonSerde())
        clicks = driver.input_topic("clicks", StringSerde(), JsonSerde())
        orders.pipe("ann", {"amount": 30})
        clicks.pipe("s1", {"customer": "ann"})
        orders.pipe("bob", {"amount": 5})
        refunds.pipe("ann", {"amount": 10})
        clicks.pipe("s2", {"customer": "bob"})
        clicks.pipe("s1", {"customer": "ann"})
        out = driver.output_topic("activity", StringSerde(), JsonSerde())
        assert out.read_key_values_to_list() == [
            ("ann", {"orders": 1, "spent": 30, "clicks": 0}),
            ("ann", {"orders": 1, "spent": 30, "clicks": 1}),
            ("bob", {"orders": 1, "spent": 5, "clicks": 0}),
            ("ann", {"orders": 1, "spent": 20, "clicks": 1}),
            ("bob", {"orders": 1, "spent": 5, "clicks": 1}),
            ("ann", {"orders": 1, "spent": 20, "clicks": 2})]
        stores = [driver.get_store("activity", p) for p in range(2)]
        assert {k: v for s in stores for k, v in s.all()} == {
            "ann": {"orders": 1, "spent": 20, "clicks": 2},
            "bob": {"orders": 1, "spent": 5, "clicks": 1}}
