"""Repartitioning: `Stream.repartition`, joins after a key change without a hand-made topic,
repartition topics sized to the join they feed, co-partitioning errors naming the fix."""

from __future__ import annotations

import pytest

from kstream import JoinWindows, MissingTopicsError, StreamBuilder, TopologyError
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde


def orders_with_customers(name: str | None = "by-customer") -> StreamBuilder:
    """Orders keyed by order id, re-keyed by customer, joined with the customers table."""
    b = StreamBuilder()
    customers = b.table("customers", StringSerde(), JsonSerde(), name="customers")
    (b.stream("orders", StringSerde(), JsonSerde())
     .select_key(lambda _order, o: o["customer"])
     .left_join(customers, lambda o, c: {"order": o["id"], "name": c and c["name"]}, name=name)
     .to("enriched", StringSerde(), JsonSerde()))
    return b


def test_select_key_then_table_join_repartitions_by_itself() -> None:
    with TopologyTestDriver(orders_with_customers(), application_id="shop",
                            partitions={"orders": 3, "customers": 2}) as driver:
        assert driver.partition_count("shop-by-customer-repartition") == 2  # the table's
        customers = driver.input_topic("customers", StringSerde(), JsonSerde())
        orders = driver.input_topic("orders", StringSerde(), JsonSerde())
        for c in range(6):
            customers.pipe(f"c{c}", {"name": f"name{c}"})
        for i in range(30):
            orders.pipe(f"o{i}", {"id": i, "customer": f"c{i % 7}"})
        got = driver.output_topic("enriched", StringSerde(), JsonSerde()).read_records_to_list()
    assert sorted((r.key, r.value["order"], r.value["name"]) for r in got) == sorted(
        (f"c{i % 7}", i, f"name{i % 7}" if i % 7 < 6 else None) for i in range(30))


def test_a_join_after_a_key_change_needs_a_name() -> None:
    with pytest.raises(TopologyError, match=r"name=|\.repartition"):
        orders_with_customers(name=None)


def test_explicit_repartition_topic_and_size() -> None:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), JsonSerde())
     .map(lambda k, v: (v["user"], v))
     .repartition("by-user", partitions=5)
     .group_by_key()
     .count("counts")
     .to_stream().to("out", StringSerde(), "int64"))
    with TopologyTestDriver(b, application_id="app", partitions={"in": 2}) as driver:
        assert "app-by-user-repartition" in driver.topology.internal_topics
        assert driver.partition_count("app-by-user-repartition") == 5
        assert driver.partition_count("app-counts-changelog") == 5
        inp = driver.input_topic("in", StringSerde(), JsonSerde())
        for i in range(20):
            inp.pipe(f"k{i}", {"user": f"u{i % 3}"})
        out = driver.output_topic("out", StringSerde(), "int64").read_key_values_to_dict()
    assert out == {"u0": 7, "u1": 7, "u2": 6}


def test_copartitioning_error_names_the_fix() -> None:
    b = StreamBuilder()
    left, right = b.stream("l", StringSerde(), JsonSerde()), b.stream("r", StringSerde(),
                                                                       JsonSerde())
    left.join(right, lambda a, c: [a, c], JoinWindows.of(5), "j").to("out")
    with pytest.raises(MissingTopicsError, match=r"co-partitioning.*\.repartition\(name="):
        TopologyTestDriver(b, partitions={"l": 2, "r": 3})


def test_explicit_repartition_fixes_copartitioning() -> None:
    b = StreamBuilder()
    left = b.stream("l", StringSerde(), JsonSerde())
    right = b.stream("r", StringSerde(), JsonSerde()).repartition("r-as-l", partitions=2)
    left.join(right, lambda a, c: [a, c], JoinWindows.of(5), "j").to(
        "out", StringSerde(), JsonSerde())
    with TopologyTestDriver(b, application_id="a", partitions={"l": 2, "r": 3}) as driver:
        li = driver.input_topic("l", StringSerde(), JsonSerde())
        ri = driver.input_topic("r", StringSerde(), JsonSerde())
        for i in range(10):
            li.pipe(f"k{i}", i, 100 + i)
            ri.pipe(f"k{i}", -i, 100 + i)
        out = driver.output_topic("out", StringSerde(), JsonSerde()).read_key_values_to_dict()
    assert out == {f"k{i}": [i, -i] for i in range(10)}


def test_stream_stream_join_of_two_rekeyed_streams_takes_the_larger_size() -> None:
    b = StreamBuilder()
    left = b.stream("l", StringSerde(), JsonSerde()).select_key(lambda _k, v: v["k"])
    right = b.stream("r", StringSerde(), JsonSerde()).select_key(lambda _k, v: v["k"])
    left.join(right, lambda a, c: [a["id"], c["id"]], JoinWindows.of(5), "j").to(
        "out", StringSerde(), JsonSerde())
    with TopologyTestDriver(b, application_id="a", partitions={"l": 2, "r": 4}) as driver:
        assert driver.partition_count("a-j-left-repartition") == 4
        assert driver.partition_count("a-j-right-repartition") == 4
        li = driver.input_topic("l", StringSerde(), JsonSerde())
        ri = driver.input_topic("r", StringSerde(), JsonSerde())
        for i in range(12):
            li.pipe(f"x{i}", {"k": f"k{i % 4}", "id": i}, 10 * i)
            ri.pipe(f"y{i}", {"k": f"k{i % 4}", "id": 100 + i}, 10 * i + 2)
        got = driver.output_topic("out", StringSerde(), JsonSerde()).read_key_values_to_list()
    assert sorted(got) == sorted((f"k{i % 4}", [i, 100 + i]) for i in range(12))


def test_repartition_name_must_be_legal() -> None:
    with pytest.raises(TopologyError, match="name"):
        StreamBuilder().stream("in").repartition("bad name")
