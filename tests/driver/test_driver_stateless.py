"""A multi-step stateless DSL topology gives exact outputs through the test driver."""

from __future__ import annotations

from typing import Any

import pytest

from kstream import Record, StreamBuilder
from kstream.testing import TopologyTestDriver


def _shop(seen: list[Any]) -> StreamBuilder:
    b = StreamBuilder()
    orders = b.stream("orders", key_serde="string", value_serde="json")
    returns = b.stream("returns", key_serde="string", value_serde="json")
    items = (orders.filter(lambda k, v: v["qty"] > 0)
             .peek(lambda k, v: seen.append(k))
             .flat_map_values(lambda v: [{"sku": s, "qty": v["qty"], "cat": v["cat"]}
                                         for s in v["skus"]])
             .select_key(lambda k, v: v["sku"]))
    back = returns.map(lambda k, v: (v["sku"], {"sku": v["sku"], "qty": -v["qty"],
                                                 "cat": "return"}))
    routes = (items.merge(back).split()
              .branch(lambda k, v: v["qty"] >= 10, "bulk")
              .branch(lambda k, v: v["qty"] < 0, "returns")
              .default_branch("rest"))
    routes["bulk"].to("bulk", key_serde="string", value_serde="json",
                      partitioner=lambda k, v, n: len(k) % n)
    routes["returns"].map_values(lambda v: v["qty"]).to("returned", key_serde="string",
                                                        value_serde="int32")
    routes["rest"].to(lambda r: f"cat-{r.value['cat']}", key_serde="string", value_serde="json")
    return b


def test_stateless_chain_exact_outputs() -> None:
    seen: list[Any] = []
    with TopologyTestDriver(_shop(seen), partitions={"bulk": 3}) as driver:
        orders = driver.input_topic("orders", "string", "json")
        returns = driver.input_topic("returns", "string", "json")
        orders.pipe("o1", {"qty": 12, "cat": "tools", "skus": ["hammer", "drill"]}, 100)
        orders.pipe("o2", {"qty": 0, "cat": "tools", "skus": ["nail"]}, 200)
        orders.pipe("o3", {"qty": 2, "cat": "food", "skus": ["apple", "pear"]}, 300)
        returns.pipe("r1", {"sku": "drill", "qty": 1}, 400)
        orders.pipe("o4", {"qty": 1, "cat": "toys", "skus": ["ball"]}, 500)

        bulk = driver.output_topic("bulk", "string", "json")
        assert bulk.queue_size() == 2
        assert bulk.read_records_to_list() == [
            Record("hammer", {"sku": "hammer", "qty": 12, "cat": "tools"}, 100, None, "bulk",
                   0, 0),
            Record("drill", {"sku": "drill", "qty": 12, "cat": "tools"}, 100, None, "bulk",
                   2, 0),
        ]
        assert bulk.is_empty()
        food = driver.output_topic("cat-food", "string", "json")
        assert food.read_key_values_to_list() == [
            ("apple", {"sku": "apple", "qty": 2, "cat": "food"}),
            ("pear", {"sku": "pear", "qty": 2, "cat": "food"}),
        ]
        toys = driver.output_topic("cat-toys", "string", "json")
        assert toys.read_record() == Record("ball", {"sku": "ball", "qty": 1, "cat": "toys"},
                                            500, None, "cat-toys", 0, 0)
        returned = driver.output_topic("returned", "string", "int32")
        assert returned.read_key_value() == ("drill", -1)
        assert returned.is_empty()
        assert driver.output_topic("cat-tools").is_empty()
        assert seen == ["o1", "o3", "o4"]


def test_headers_and_timestamps_propagate() -> None:
    b = StreamBuilder()
    (b.stream("in", key_serde="string", value_serde="string")
     .flat_map_values(lambda v: v.split())
     .map_values(str.upper)
     .to("out", key_serde="string", value_serde="string"))
    with TopologyTestDriver(b, initial_wall_clock_ms=7) as driver:
        src = driver.input_topic("in", "string", "string", start_timestamp_ms=1000,
                                 advance_ms=10)
        src.pipe("k", "a b", headers={"trace": "t-1", "raw": b"\x00\x01"})
        src.pipe("k", "c")
        src.pipe("k", "d", timestamp=5, headers=[("dup", b"1"), ("dup", b"2")])
        src.pipe("k", "e")
        out = driver.output_topic("out", "string", "string")
        records = out.read_records_to_list()
    assert [(r.value, r.timestamp, r.offset) for r in records] == [
        ("A", 1000, 0), ("B", 1000, 1), ("C", 1010, 2), ("D", 5, 3), ("E", 1020, 4)]
    trace = [("trace", b"t-1"), ("raw", b"\x00\x01")]
    assert [r.headers for r in records] == [trace, trace, None, [("dup", b"1"), ("dup", b"2")],
                                            None]
    assert records[0].headers is not records[1].headers


def test_default_start_timestamp_is_the_driver_clock() -> None:
    b = StreamBuilder()
    b.stream("in").to("out")
    with TopologyTestDriver(b.build(), initial_wall_clock_ms=5_000) as driver:
        driver.advance_wall_clock(250)
        driver.input_topic("in", advance_ms=1).pipe_many([(b"k", b"1"), (b"k", b"2"),
                                                          (b"k", b"3", 42)])
        out = driver.output_topic("out")
        assert [r.timestamp for r in out.read_records_to_list()] == [5_250, 5_251, 42]


def test_output_topic_reading_consumes_and_tables() -> None:
    b = StreamBuilder()
    b.stream("in", key_serde="string", value_serde="json").to("out", "string", "json")
    with TopologyTestDriver(b) as driver:
        src = driver.input_topic("in", "string", "json")
        src.pipe_many([("a", 1), ("b", 2), ("a", 3), ("b", None), ("c", 4)])
        reader_one = driver.output_topic("out", "string", "json")
        reader_two = driver.output_topic("out", "string", "json")
        assert reader_one.read_value() == 1
        assert reader_two.queue_size() == 4  # readers of a topic share one queue
        assert reader_two.read_key_values_to_dict() == {"a": 3, "c": 4}
        assert reader_one.is_empty()
        with pytest.raises(LookupError, match="out"):
            reader_one.read_record()
        src.pipe(None, 1)
        with pytest.raises(ValueError, match="null key"):
            reader_one.read_key_values_to_dict()


def test_unknown_input_topic_and_closed_driver() -> None:
    b = StreamBuilder()
    b.stream("in").to("out")
    driver = TopologyTestDriver(b)
    with pytest.raises(ValueError, match="not a source topic"):
        driver.input_topic("out")
    src = driver.input_topic("in")
    state_dir = driver.state_dir
    assert state_dir.is_dir()
    driver.close()
    driver.close()  # idempotent
    assert not state_dir.exists()
    with pytest.raises(RuntimeError, match="closed"):
        src.pipe(b"k", b"v")


def test_bad_options_are_rejected() -> None:
    b = StreamBuilder()
    b.stream("in").to("out")
    with pytest.raises(ValueError, match="error_policy"):
        TopologyTestDriver(b, error_policy="ignore")
    with pytest.raises(ValueError, match="commit_every"):
        TopologyTestDriver(b, commit_every=0)
    with pytest.raises(ValueError, match="partition"):
        TopologyTestDriver(b, partitions={"in": 0})


def test_same_input_same_output() -> None:
    def run() -> list[tuple[str, list[Record]]]:
        seen: list[Any] = []
        with TopologyTestDriver(_shop(seen), partitions={"bulk": 3, "orders": 2}) as driver:
            orders = driver.input_topic("orders", "string", "json", advance_ms=3)
            for i in range(50):
                orders.pipe(None if i % 7 == 0 else f"o{i}",
                            {"qty": i % 13, "cat": f"c{i % 4}", "skus": [f"s{i}", f"t{i}"]})
            topics = ["bulk", *(f"cat-c{i}" for i in range(4))]
            return [(t, driver.output_topic(t, "string", "json").read_records_to_list())
                    for t in topics]

    first = run()
    assert sum(len(records) for _, records in first) > 50
    assert run() == first
