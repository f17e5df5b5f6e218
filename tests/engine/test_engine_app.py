"""The App as a user meets it: config validation, topic checks, a multi-step topology, metrics."""

from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest

from kstream import App, ConfigError, MissingTopicsError, StreamBuilder
from kstream.broker import free_port
from kstream.runtime.identity import InstanceIdentity, StateDirLockedError
from kstream.testing import KafkaCluster, running_app, wait_until
from serdes import Int64Serde, JsonSerde, StringSerde


def _passthrough(topic: str) -> StreamBuilder:
    b = StreamBuilder()
    b.stream(topic).to(f"{topic}-out")
    return b


@pytest.mark.parametrize(("settings", "message"), [
    ({"processing_guarantee": "twice"}, "processing_guarantee"),
    ({"error_policy": "ignore"}, "error_policy"),
    ({"batch_size": 0}, "batch_size must be positive"),
    ({"consumer_config": {"enable.auto.commit": True}}, "kstream manages it"),
    ({"producer_config": {"transactional.id": "x"}}, "kstream manages it"),
    ({"comit_interval_ms": 5}, "unknown setting(s): comit_interval_ms"),
    ({"application_id": "bad id!"}, "application_id"),
])
def test_invalid_config_fails_at_construction(settings: dict, message: str) -> None:  # type: ignore[type-arg]
    base = {"application_id": "app", "bootstrap_servers": "127.0.0.1:1"}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        App(_passthrough("t"), **{**base, **settings})


def test_missing_topics_fail_at_start_or_are_created(kafka: KafkaCluster, tmp_path: Path) -> None:
    topic = kafka.unique_name("absent")
    app = App(_passthrough(topic), application_id=kafka.unique_name("missing"),
              bootstrap_servers=kafka.bootstrap_servers, state_dir=tmp_path)
    with pytest.raises(MissingTopicsError, match=topic):
        app.run(install_signal_handlers=False)
    created = App(_passthrough(topic), application_id=kafka.unique_name("create"),
                  bootstrap_servers=kafka.bootstrap_servers, state_dir=tmp_path,
                  auto_create_topics=True, topic_partitions=3)
    with running_app(created, join_timeout=30):
        wait_until(lambda: topic in kafka.admin.list_topics(timeout=5).topics, 30, "creation")
        md = kafka.admin.list_topics(topic, timeout=5).topics[topic]
        assert len(md.partitions) == 3
    kafka.delete_topics([topic, f"{topic}-out"])


def test_state_dir_is_exclusive(tmp_path: Path) -> None:
    first = InstanceIdentity(tmp_path, "app")
    try:
        with pytest.raises(StateDirLockedError, match="in use by another running instance"):
            InstanceIdentity(tmp_path, "app")
    finally:
        first.release()
    again = InstanceIdentity(tmp_path, "app")
    assert again.instance_id == first.instance_id  # stable across restarts
    again.release()


def test_multi_step_topology_exact_output_and_metrics(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    orders = topic_factory(partitions=3)
    refunds = topic_factory(partitions=1)
    big, small, audit = (topic_factory(partitions=2) for _ in range(3))
    kafka.produce(orders, ((str(i).encode(), orjson.dumps({"id": i, "amount": i * 10,
                                                            "items": ["a", "b"][: i % 3]}))
                           for i in range(300)))
    kafka.produce(refunds, ((None, orjson.dumps({"id": 1000 + i, "amount": -5, "items": ["r"]}))
                            for i in range(20)))
    b = StreamBuilder()
    src = b.stream(orders, StringSerde(), JsonSerde())
    ref = b.stream(refunds, StringSerde(), JsonSerde())
    merged = src.filter_not(lambda _k, v: v["id"] % 10 == 0).merge(ref)
    branches = (merged.split()
                .branch(lambda _k, v: v["amount"] >= 1000, "big")
                .branch(lambda _k, v: v["amount"] >= 0, "small")
                .default_branch("refunds"))
    branches["big"].map_values(lambda v: v["amount"]).select_key(lambda _k, v: f"big-{v}") \
        .to(big, key_serde=StringSerde(), value_serde=Int64Serde(),
            partitioner=lambda _k, v, n: v % n)
    branches["small"].flat_map_values(lambda v: v["items"]) \
        .map(lambda k, item: (f"{k}:{item}", item.upper())) \
        .to(lambda r: small if r.value == "A" else audit, key_serde=StringSerde(),
            value_serde=StringSerde())
    branches["refunds"].peek(lambda _k, _v: None).to(audit, key_serde=StringSerde(),
                                                     value_serde=JsonSerde())
    port = free_port()
    app = App(b, application_id=kafka.unique_name("multi"), state_dir=tmp_path,
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              metrics_port=port)
    kept = [i for i in range(300) if i % 10]
    want_big = Counter((f"big-{i * 10}", i * 10) for i in kept if i * 10 >= 1000)
    want_small = Counter((f"{i}:a", "A") for i in kept if i * 10 < 1000 and i % 3 >= 1)
    want_audit = Counter((f"{i}:b", "B") for i in kept if i * 10 < 1000 and i % 3 == 2)
    with running_app(app):
        got_big = kafka.read_topic(big, min_count=sum(want_big.values()), timeout=60)
        got_small = kafka.read_topic(small, min_count=sum(want_small.values()), timeout=60)
        got_audit = kafka.read_topic(audit, min_count=sum(want_audit.values()) + 20, timeout=60)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    assert Counter((r.key.decode(), Int64Serde().deserialize(r.value)) for r in got_big) \
        == want_big  # type: ignore[union-attr]
    assert all(r.partition == Int64Serde().deserialize(r.value) % 2 for r in got_big)
    assert Counter((r.key.decode(), r.value.decode()) for r in got_small) == want_small  # type: ignore[union-attr]
    plain = [r for r in got_audit if r.key is not None]
    assert Counter((r.key.decode(), r.value.decode()) for r in plain) == want_audit  # type: ignore[union-attr]
    refunds_out = [orjson.loads(r.value) for r in got_audit if r.key is None]  # type: ignore[arg-type]
    assert sorted(v["id"] for v in refunds_out) == list(range(1000, 1020))
    assert b"kstream_records_in_total" in text and b"kstream_commits_total" in text
