"""App-wide default serdes (default_key_serde / default_value_serde), as Kafka Streams'
default.key.serde / default.value.serde: they apply wherever no serde was given; without them
each place keeps its documented fallback (raw bytes for named topics, JSON for internal
topics and stores), and the places where that fallback is likely a mistake are named in a
warning when the app or driver starts. Then the same on a real broker.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from kstream import App, ConfigError, RecordError, StreamBuilder, TumblingWindows
from kstream.config import AppConfig
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from serdes import StringSerde


def amounts_by_city() -> StreamBuilder:
    """No serde anywhere: source, group_by key, aggregate and sink all take the defaults."""
    b = StreamBuilder()
    (b.stream("payments")
     .group_by(lambda _k, v: v["city"], name="by-city")
     .aggregate(lambda: {"n": 0}, lambda _k, v, agg: {"n": agg["n"] + v["amount"]}, "totals")
     .to_stream()
     .to("totals-out"))
    return b


def test_defaults_reach_sources_grouping_keys_stores_and_sinks(tmp_path: Path) -> None:
    with TopologyTestDriver(amounts_by_city(), state_dir=tmp_path, default_key_serde="string",
                            default_value_serde="json") as driver:
        payments = driver.input_topic("payments")  # the driver's defaults too
        payments.pipe("p1", {"city": "Oslo", "amount": 5})
        payments.pipe("p2", {"city": "Oslo", "amount": 7})
        raw = driver.output_topic("totals-out", "bytes", "bytes").read_key_values_to_list()
        # Keys as a Java StringDeserializer reads them: no JSON quotes.
        assert raw == [(b"Oslo", b'{"n":5}'), (b"Oslo", b'{"n":12}')]
        repartition = driver.output_topic("test-app-totals-repartition", "bytes", "bytes")
        assert [k for k, _ in repartition.read_key_values_to_list()] == [b"Oslo", b"Oslo"]
        changelog = driver.output_topic("test-app-totals-changelog", "bytes", "bytes")
        assert changelog.read_key_values_to_list()[-1] == (b"Oslo", b'{"n":12}')


def test_without_defaults_the_fallbacks_stay_and_group_by_keys_are_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = StreamBuilder()
    (b.stream("payments", "string", "json")
     .group_by(lambda _k, v: v["city"], name="by-city")
     .count("counts")
     .to_stream()
     .to("counts-out"))
    with caplog.at_level(logging.WARNING, logger="kstream.serdes"), \
            TopologyTestDriver(b, state_dir=tmp_path) as driver:
        driver.input_topic("payments", "string", "json").pipe("p1", {"city": "Oslo"})
        raw = driver.output_topic("counts-out", "bytes", "int64").read_key_values_to_list()
    assert raw == [(b'"Oslo"', 1)]  # JSON key, quotes included: the documented fallback
    warned = [r.getMessage() for r in caplog.records if "serde_fallback" in r.getMessage()]
    assert len(warned) == 1 and "group_by" in warned[0] and "default_key_serde" in warned[0]


def test_to_after_map_values_warns_at_start_and_fails_clearly_at_the_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = StreamBuilder()
    b.stream("in", "string", "string").map_values(lambda v: {"v": v}).to("out")
    with caplog.at_level(logging.WARNING, logger="kstream.serdes"), \
            TopologyTestDriver(b, state_dir=tmp_path) as driver:
        warned = [r.getMessage() for r in caplog.records if "serde_fallback" in r.getMessage()]
        assert len(warned) == 1
        assert "to('out')" in warned[0] and "value" in warned[0] and "BytesSerde" in warned[0]
        with pytest.raises(RecordError, match="expected bytes, got dict: give the topic a "
                           "value_serde .* or set default_value_serde"):
            driver.input_topic("in", "string", "string").pipe("k", "x")


def test_to_after_map_values_uses_the_default_value_serde(tmp_path: Path) -> None:
    b = StreamBuilder()
    b.stream("in", "string", "string").map_values(lambda v: {"v": v}).to("out")
    with TopologyTestDriver(b, state_dir=tmp_path, default_value_serde="json") as driver:
        driver.input_topic("in", "string", "string").pipe("k", "x")
        out = driver.output_topic("out", "string", "bytes").read_key_values_to_list()
    assert out == [("k", b'{"v":"x"}')]


def test_merge_keeps_equal_serdes_of_separate_instances(tmp_path: Path) -> None:
    b = StreamBuilder()
    one = b.stream("a", StringSerde(), "string")
    two = b.stream("b", "string", StringSerde())
    one.merge(two).to("out")  # no serde given: the merged stream still carries strings
    with TopologyTestDriver(b, state_dir=tmp_path) as driver:
        driver.input_topic("a", "string", "string").pipe("k1", "x")
        driver.input_topic("b", "string", "string").pipe("k2", "y")
        out = driver.output_topic("out", "bytes", "bytes").read_key_values_to_list()
    assert out == [(b"k1", b"x"), (b"k2", b"y")]


def test_reduce_stores_with_the_grouped_value_serde(tmp_path: Path) -> None:
    b = StreamBuilder()
    (b.stream("words", "string", "string").group_by_key()
     .reduce(lambda agg, v: agg + v, "joined").to_stream().to("joined-out"))
    with TopologyTestDriver(b, state_dir=tmp_path) as driver:
        words = driver.input_topic("words", "string", "string")
        words.pipe("k", "a")
        words.pipe("k", "b")
        changelog = driver.output_topic("test-app-joined-changelog", "bytes", "bytes")
        assert changelog.read_key_values_to_list()[-1] == (b"k", b"ab")  # not JSON '"ab"'
        out = driver.output_topic("joined-out", "string", "string").read_values_to_list()
    assert out == ["a", "ab"]


def test_windowed_reduce_stores_with_the_grouped_value_serde(tmp_path: Path) -> None:
    b = StreamBuilder()
    (b.stream("words", "string", "string").group_by_key()
     .windowed_by(TumblingWindows(1000)).reduce(lambda agg, v: agg + v, "joined-w")
     .to_stream().map(lambda w, v: (w.key, v)).to("joined-w-out", "string", "string"))
    with TopologyTestDriver(b, state_dir=tmp_path) as driver:
        words = driver.input_topic("words", "string", "string")
        words.pipe("k", "a", timestamp=10)
        words.pipe("k", "b", timestamp=20)
        changelog = driver.output_topic("test-app-joined-w-changelog", "bytes", "bytes")
        assert changelog.read_values_to_list()[-1] == b"ab"  # not JSON '"ab"'
        out = driver.output_topic("joined-w-out", "string", "string").read_values_to_list()
    assert out == ["a", "ab"]


def test_table_group_by_key_takes_the_default_key_serde(tmp_path: Path) -> None:
    b = StreamBuilder()
    (b.table("accounts", "string", "json", name="accounts")
     .group_by(lambda _k, acct: (acct["city"], acct))
     .count("per-city").to_stream().to("per-city-out", value_serde="int64"))
    with TopologyTestDriver(b, state_dir=tmp_path, default_key_serde="string") as driver:
        driver.input_topic("accounts", "string", "json").pipe("a1", {"city": "Rome"})
        out = driver.output_topic("per-city-out", "bytes", "int64").read_key_values_to_list()
    assert out == [(b"Rome", 1)]


def test_one_topology_serves_one_set_of_defaults(tmp_path: Path) -> None:
    b = amounts_by_city()
    with TopologyTestDriver(b, state_dir=tmp_path / "a", default_key_serde="string"):
        pass
    with TopologyTestDriver(b, state_dir=tmp_path / "b", default_key_serde="string"):
        pass  # the same defaults again: fine
    with pytest.raises(ConfigError, match="other default serdes"):
        TopologyTestDriver(b, state_dir=tmp_path / "c", default_key_serde="json")


def test_config_validates_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="default_key_serde: unknown serde 'strnig'"):
        AppConfig.from_kwargs(application_id="a", bootstrap_servers="b",
                              default_key_serde="strnig")
    monkeypatch.setenv("KSTREAM_DEFAULT_VALUE_SERDE", "json")
    config = AppConfig.from_kwargs(application_id="a", bootstrap_servers="b")
    assert config.default_value_serde == "json" and config.default_key_serde is None


def test_defaults_on_a_real_broker(kafka: KafkaCluster, topic_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    payments, out = topic_factory(partitions=2), topic_factory(partitions=2)
    b = StreamBuilder()
    (b.stream(payments)
     .group_by(lambda _k, v: v["city"], name="by-city")
     .aggregate(lambda: 0, lambda _k, v, agg: agg + v["amount"], "totals")
     .to_stream()
     .to(out))
    app = App(b, application_id=kafka.unique_name("defaults"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path, default_key_serde="string", default_value_serde="json")
    kafka.produce(payments, [(b"p1", orjson.dumps({"city": "Oslo", "amount": 5})),
                             (b"p2", orjson.dumps({"city": "Rome", "amount": 1})),
                             (b"p3", orjson.dumps({"city": "Oslo", "amount": 7}))])
    with running_app(app):
        records = kafka.read_topic(out, min_count=3, timeout=60)
    finals = {r.key: r.value for r in records}
    assert finals == {b"Oslo": b"12", b"Rome": b"1"}


def test_global_tables_and_foreign_key_joins_take_the_defaults(tmp_path: Path) -> None:
    b = StreamBuilder()
    products = b.global_table("products", name="products")
    orders = b.table("orders", name="orders")
    customers = b.table("customers", name="customers")
    (orders.join(customers, lambda order: order["customer"], lambda o, c: {**o, "name": c},
                 name="with-customer")
     .to_stream().to("orders-named"))
    (b.stream("clicks").join(products, lambda _k, click: click["sku"],
                             lambda click, product: product["title"]).to("titles"))
    with TopologyTestDriver(b, state_dir=tmp_path, default_key_serde="string",
                            default_value_serde="json") as driver:
        driver.input_topic("products").pipe("p1", {"title": "Pen"})
        driver.input_topic("customers").pipe("c1", "Ada")
        driver.input_topic("orders").pipe("o1", {"customer": "c1"})
        driver.input_topic("clicks").pipe("u1", {"sku": "p1"})
        named = driver.output_topic("orders-named", "bytes", "bytes").read_key_values_to_list()
        titles = driver.output_topic("titles", "bytes", "bytes").read_key_values_to_list()
    assert named == [(b"o1", b'{"customer":"c1","name":"Ada"}')]
    assert titles == [(b"u1", b'"Pen"')]
