"""Global tables in the TopologyTestDriver: join semantics against a model, Processor API
reads, read-only stores, topology checks and describe()."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream import (
    Processor,
    ProcessorContext,
    Record,
    RecordError,
    StreamBuilder,
    TopologyError,
)
from kstream.describe import describe_mermaid, describe_text
from kstream.diagram import render_svg
from kstream.state.global_store import ReadOnlyStoreError
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde


def build(left: bool, backend: str = "memory") -> StreamBuilder:
    b = StreamBuilder()
    products = b.global_table("products", StringSerde(), JsonSerde(), name="products",
                              backend=backend)
    orders = b.stream("orders", StringSerde(), JsonSerde())
    join = orders.left_join if left else orders.join
    join(products, lambda _id, o: o["sku"], lambda o, p: [o["n"], p]).to(
        "out", StringSerde(), JsonSerde())
    return b


Op = tuple[str, str, Any]  # ("product", sku, value or None) | ("order", order key, sku or None)

ops = st.lists(st.one_of(
    st.tuples(st.just("product"), st.sampled_from(["a", "b", "c", "d"]),
              st.one_of(st.none(), st.integers(0, 9))),
    st.tuples(st.just("order"), st.sampled_from(["o1", "o2", "o3"]),
              st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])))), max_size=40)


def model(sequence: list[Op], left: bool) -> tuple[list[tuple[str, Any]], int]:
    """Outputs in order, and how many orders were skipped for a None lookup key: each order
    sees the products as piped before it (updates apply at once)."""
    table: dict[str, Any] = {}
    out: list[tuple[str, Any]] = []
    skipped = 0
    for n, (kind, key, value) in enumerate(sequence):
        if kind == "product":
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        elif value is None:
            skipped += 1
        elif value in table or left:
            out.append((key, [n, table.get(value)]))
    return out, skipped


@pytest.mark.parametrize("left", [False, True], ids=["inner", "left"])
@pytest.mark.parametrize("fusion", [True, False], ids=["fused", "unfused"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=ops)
def test_stream_global_table_join_equals_the_model(sequence: list[Op], left: bool,
                                                   fusion: bool) -> None:
    with TopologyTestDriver(build(left), partitions={"products": 3, "orders": 2},
                            fusion=fusion) as driver:
        products = driver.input_topic("products", StringSerde(), JsonSerde())
        orders = driver.input_topic("orders", StringSerde(), JsonSerde())
        for n, (kind, key, value) in enumerate(sequence):
            if kind == "product":
                products.pipe(key, value)
            else:
                orders.pipe(key, {"n": n, "sku": value})
        want, skipped = model(sequence, left)
        assert driver.output_topic("out", StringSerde(), JsonSerde()) \
            .read_key_values_to_list() == want
        assert driver.skipped_records["null_key"] == skipped


def test_null_values_are_skipped_and_a_left_join_keeps_null_keys() -> None:
    with TopologyTestDriver(build(left=True)) as driver:
        driver.input_topic("products", StringSerde(), JsonSerde()).pipe("a", 1)
        orders = driver.input_topic("orders", StringSerde(), JsonSerde())
        orders.pipe("o1", None)
        orders.pipe(None, {"n": 7, "sku": "a"})
        orders.pipe(None, {"n": 8, "sku": "zzz"})
        out = driver.output_topic("out", StringSerde(), JsonSerde()).read_key_values_to_list()
        assert out == [(None, [7, 1]), (None, [8, None])]
        assert driver.skipped_records == {"null_key": 0, "null_value": 1}
    with TopologyTestDriver(build(left=False)) as driver:
        driver.input_topic("products", StringSerde(), JsonSerde()).pipe("a", 1)
        driver.input_topic("orders", StringSerde(), JsonSerde()).pipe(None, {"n": 7, "sku": "a"})
        assert driver.output_topic("out", StringSerde(), JsonSerde()) \
            .read_key_values_to_list() == [(None, [7, 1])]


class Lookup(Processor):
    """Reads the global store by name; tries to write it when asked to."""

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self.products = context.get_store("products")

    def process(self, record: Record) -> None:
        if record.value == "write":
            self.products.put(record.key, 1)
        self.context.forward(Record(record.key, [self.products.get(record.key),
                                                 sorted(k for k, _ in self.products.all())],
                                    record.timestamp))


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_processors_read_global_stores_by_name(backend: str) -> None:
    b = StreamBuilder()
    b.global_table("products", StringSerde(), JsonSerde(), name="products", backend=backend)
    (b.stream("lookups", StringSerde(), StringSerde()).process(Lookup)
     .to("found", StringSerde(), JsonSerde()))
    with TopologyTestDriver(b, partitions={"products": 4, "lookups": 2}) as driver:
        products = driver.input_topic("products", StringSerde(), JsonSerde())
        lookups = driver.input_topic("lookups", StringSerde(), StringSerde())
        for sku in ("a", "b", "c", "d", "e"):
            products.pipe(sku, {"sku": sku})
        products.pipe("c", None)
        lookups.pipe("b", "read")
        lookups.pipe("c", "read")
        assert driver.output_topic("found", StringSerde(), JsonSerde()).read_values_to_list() \
            == [[{"sku": "b"}, ["a", "b", "d", "e"]], [None, ["a", "b", "d", "e"]]]
        store = driver.get_store("products")
        assert store.get("a") == {"sku": "a"} and store.approximate_count() == 4
        with pytest.raises(RecordError) as info:  # the processor's fault, not kstream's
            lookups.pipe("x", "write")
        assert isinstance(info.value.__cause__, ReadOnlyStoreError)


def test_topology_rules_and_describe() -> None:
    b = StreamBuilder()
    b.global_table("products", StringSerde(), JsonSerde(), name="products")
    with pytest.raises(TopologyError, match="already read by global store"):
        b.stream("products")
    with pytest.raises(TopologyError, match="already exists"):
        b.table("other", name="products")
    with pytest.raises(TopologyError, match="global store"):
        b.stream("x").process(Lookup, "products")
    with pytest.raises(TopologyError, match="key_selector"):
        b.stream("y").join(b.global_table("p2", name="p2"), lambda v, w: v)  # type: ignore[call-overload]
    b2 = build(left=False, backend="rocksdb")
    text = b2.build().describe()
    assert "Sub-topology: 1 for global store (will not generate tasks)" in text
    assert "Source: products-source (topics: [products])" in text
    assert "Global stores" in describe_text(b2.build(), "app")
    assert "products: key-value, rocksdb, topic products" in describe_text(b2.build(), "app")
    assert 't_products --> g_products' in describe_mermaid(b2.build())
    assert 'products' in render_svg(describe_mermaid(b2.build()))
    assert 'products' in render_svg(b2.build().describe_mermaid())
