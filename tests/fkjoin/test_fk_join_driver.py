"""Foreign-key joins in the TopologyTestDriver: equal to the brute-force model after every
input (Hypothesis), stale responses dropped, Kafka Streams' null-FK rules, topic names."""

from __future__ import annotations

from typing import Any

import pytest
from fk_helpers import Op, fk_builder, model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream import TopologyError
from kstream.dsl._fk_ops import _RESP, VERSION, value_hash
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde

ORDER_KEYS = ["o1", "o2", "o3", "o4"]
CUSTOMER_KEYS = ["c1", "c2", "c3"]


def op_strategy(null_fk: bool) -> st.SearchStrategy[list[Op]]:
    fks = st.sampled_from(CUSTOMER_KEYS)
    if null_fk:
        fks = st.one_of(st.none(), fks)
    orders = st.tuples(st.just("order"), st.sampled_from(ORDER_KEYS), st.one_of(
        st.none(), st.fixed_dictionaries({"n": st.integers(0, 5), "c": fks})))
    customers = st.tuples(st.just("customer"), st.sampled_from(CUSTOMER_KEYS),
                          st.one_of(st.none(), st.sampled_from(["Ann", "Bob", "Cy"])))
    return st.lists(st.one_of(orders, customers), max_size=40)


def run(ops: list[Op], left: bool, partitions: dict[str, int]) -> None:
    with TopologyTestDriver(fk_builder(left), partitions=partitions) as driver:
        inputs = {"order": driver.input_topic("orders", "string", "json"),
                  "customer": driver.input_topic("customers", "string", "json")}
        out = driver.output_topic("out", "string", "json")
        table: dict[str, Any] = {}
        for step, (kind, key, value) in enumerate(ops):
            inputs[kind].pipe(key, value)
            for rec in out.read_records_to_list():
                if rec.value is None:
                    table.pop(rec.key, None)
                else:
                    table[rec.key] = rec.value
            # After every input: no stale, missing or extra result.
            assert table == model(ops[:step + 1], left), (step, ops[:step + 1])
        store = driver.get_store("fk-store", 0)
        stored = {k: v for p in range(partitions["orders"])
                  for k, v in driver.get_store("fk-store", p).all()}
        assert store is not None and stored == model(ops, left)


@pytest.mark.parametrize("partitions", [{"orders": 1, "customers": 1},
                                        {"orders": 2, "customers": 3}], ids=["1x1", "2x3"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=op_strategy(null_fk=False))
def test_inner_fk_join_equals_the_model(ops: list[Op], partitions: dict[str, int]) -> None:
    run(ops, False, partitions)


@pytest.mark.parametrize("partitions", [{"orders": 1, "customers": 1},
                                        {"orders": 3, "customers": 2}], ids=["1x1", "3x2"])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=op_strategy(null_fk=True))
def test_left_fk_join_equals_the_model(ops: list[Op], partitions: dict[str, int]) -> None:
    run(ops, True, partitions)


def test_inner_join_skips_updates_with_a_null_foreign_key() -> None:
    """Kafka Streams' rule (SubscriptionSendProcessorSupplier): an inner join skips a left
    change whose old or new FK is None, counted as a null-key skip. So the result a row had
    before its FK became None stays, even through a later delete of the row (whose old FK
    is then None), as in Kafka Streams; a left join has no such case."""
    with TopologyTestDriver(fk_builder(False)) as driver:
        orders = driver.input_topic("orders", "string", "json")
        driver.input_topic("customers", "string", "json").pipe("c1", "Ann")
        out = driver.output_topic("out", "string", "json")
        orders.pipe("o1", {"n": 1, "c": "c1"})
        orders.pipe("o1", {"n": 2, "c": None})  # skipped: the [1, "Ann"] result stays
        orders.pipe("o2", {"n": 1, "c": None})  # skipped
        assert out.read_key_values_to_list() == [("o1", [1, "Ann"])]
        assert driver.skipped_records["null_key"] == 2
        orders.pipe("o1", None)  # old FK None: skipped too
        assert out.read_key_values_to_list() == []
        assert driver.skipped_records["null_key"] == 3
        assert dict(driver.get_store("fk-store").all()) == {"o1": [1, "Ann"]}


def test_a_stale_response_is_dropped() -> None:
    """A response carrying the hash of a value the left row no longer has changes nothing."""
    with TopologyTestDriver(fk_builder(True)) as driver:
        driver.input_topic("customers", "string", "json").pipe("c1", "Ann")
        orders = driver.input_topic("orders", "string", "json")
        orders.pipe("o1", {"n": 1, "c": "c1"})
        orders.pipe("o1", {"n": 2, "c": "c1"})
        out = driver.output_topic("out", "string", "json")
        assert out.read_key_values_to_list() == [("o1", [1, "Ann"]), ("o1", [2, "Ann"])]
        responses = driver.input_topic("test-app-fk-subscription-response-topic")
        json = JsonSerde()
        old = value_hash(json.serialize({"n": 1, "c": "c1"}))
        current = value_hash(json.serialize({"n": 2, "c": "c1"}))
        assert old is not None and current is not None
        stale = _RESP.pack(VERSION, 3, old, 0) + json.serialize("Zed")
        responses.pipe(b"o1", stale)
        assert out.read_key_values_to_list() == []
        fresh = _RESP.pack(VERSION, 3, current, 0) + json.serialize("Zed")
        responses.pipe(b"o1", fresh)
        assert out.read_key_values_to_list() == [("o1", [2, "Zed"])]


def test_topic_and_store_names() -> None:
    topology = fk_builder(False).build().bind("shop")
    assert {"shop-fk-subscription-registration-topic", "shop-fk-subscription-response-topic",
            "shop-fk-subscription-store-changelog", "shop-fk-store-changelog"} \
        <= set(topology.internal_topics)
    with pytest.raises(TopologyError, match="needs a name"):
        b = fk_builder(False)
        t = b.table("x", name="x")
        t.join(t, lambda v: v, lambda a, c: a)  # type: ignore[call-overload]
