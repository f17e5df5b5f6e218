"""Records an operator cannot use are counted by reason and logged, never silently gone
(issue 15, point 3): a null key into an aggregation, table or join; a null value into an
aggregation. Kafka Streams skips these too, with a metric and a log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from kstream import App, StreamBuilder, TumblingWindows
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from serdes import JsonSerde, StringSerde


def builder() -> StreamBuilder:
    b = StreamBuilder()
    s = b.stream("in", StringSerde(), JsonSerde())
    s.group_by_key().count("counts").to_stream().to("counts-out", StringSerde(), JsonSerde())
    (s.group_by_key().windowed_by(TumblingWindows(60_000)).reduce(lambda a, v: a + v, "sums")
     .to_stream().map(lambda wk, v: (wk.key, v)).to("sums-out", StringSerde(), JsonSerde()))
    table = b.table("table-in", StringSerde(), JsonSerde(), name="tbl")
    s.join(table, lambda v, t: [v, t]).to("joined", StringSerde(), JsonSerde())
    return b


def test_driver_counts_and_logs_each_skip_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kstream.task")
    with TopologyTestDriver(builder()) as driver:
        driver.input_topic("table-in", StringSerde(), JsonSerde()).pipe(None, 1)  # table: key
        pipe = driver.input_topic("in", StringSerde(), JsonSerde())
        pipe.pipe("a", 1, 1_000)
        pipe.pipe(None, 2, 2_000)   # count, windowed reduce, join: 3 null-key skips
        pipe.pipe("a", None, 3_000)  # count, windowed reduce: 2 null-value skips
        assert driver.skipped_records == {"null_key": 4, "null_value": 2}
        counts = driver.output_topic("counts-out", StringSerde(), JsonSerde())
        assert counts.read_key_values_to_list() == [("a", 1)]
    lines = [r.getMessage() for r in caplog.records if "record_skipped" in r.getMessage()]
    # Rate-limited per operator and reason: within 10 s, one line each.
    assert any("reason=null_key" in line and "in[0]@1" in line for line in lines)
    assert any("reason=null_value" in line and "in[0]@2" in line for line in lines)
    assert any("table-in[0]@0" in line for line in lines)


def test_app_stats_count_skips_on_the_broker(kafka: KafkaCluster, topic_factory: Any,
                                             tmp_path: Path) -> None:
    inp = topic_factory(prefix="skip-in")
    out = topic_factory(prefix="skip-out")
    b = StreamBuilder()
    (b.stream(inp, StringSerde(), JsonSerde()).group_by_key().count("c").to_stream()
     .to(out, StringSerde(), JsonSerde()))
    app = App(b, application_id=kafka.unique_name("skips"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        kafka.produce(inp, [(b"a", orjson.dumps(1)), (None, orjson.dumps(2)), (b"a", None),
                            (None, orjson.dumps(3)), (b"b", orjson.dumps(4))])
        records = kafka.read_topic(out, min_count=2, timeout=60)
        wait_until(lambda: app.stats["skipped_null_key"] == 2
                   and app.stats["skipped_null_value"] == 1, 30, "the skips to be counted")
    assert sorted((r.key, r.value) for r in records) == [(b"a", b"1"), (b"b", b"1")]
