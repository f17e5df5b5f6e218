"""Metrics and the status page of a running app (real broker): /metrics series move per
partition and in the latency histograms; the status page, loaded in a real headless browser
(Debian's chromium), shows the topology diagram and a lag figure for every partition."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from ops_helpers import http_get, lines_for, produce_lines, wait_output_counts, word_counts

from kstream import App
from kstream.broker import free_port
from kstream.testing import KafkaCluster, running_app, wait_until
from topologies.wordcount import build

_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = http_get(port, "/metrics")
    assert status == 200
    samples = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = frozenset(tuple(kv.split("=", 1)) for kv in
                           re.findall(r'[a-z_]+="[^"]*"', m["labels"] or ""))
        labels = frozenset((k, v.strip('"')) for k, v in labels)
        samples[(m["name"], labels)] = float(m["value"])
    return samples


def _series(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
            **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    want = set(labels.items())
    return {lab: v for (n, lab), v in samples.items() if n == name and want <= set(lab)}


def _app(kafka: KafkaCluster, tmp_path: Path, port: int, **extra: object) -> tuple[App, str, str]:
    inp = kafka.create_topic(kafka.unique_name("m-lines"), 3)
    out = kafka.create_topic(kafka.unique_name("m-counts"), 3)
    app = App(build(inp, out), application_id=kafka.unique_name("m-wc"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path / "state", query_port=port,
              application_server=f"127.0.0.1:{port}",
              consumer_config={"statistics.interval.ms": 500}, **extra)  # type: ignore[arg-type]
    return app, inp, out


def test_metrics_per_partition_and_latency_series_move(kafka: KafkaCluster,
                                                       tmp_path: Path) -> None:
    port = free_port()
    app, inp, out = _app(kafka, tmp_path, port, error_policy="dead_letter")
    expected: Counter[str] = Counter()
    with running_app(app):
        wait_until(lambda: http_get(port, "/ready")[0] == 200, 60, "ready")
        first = lines_for(0, 300)
        produce_lines(kafka, inp, first)
        expected += word_counts(first)
        wait_output_counts(kafka, out, expected, 60)
        before = _scrape(port)
        more = lines_for(1, 300)
        # Keyless records go to one sticky partition per batch, so place a third of the
        # lines on each input partition: every partition's series must move.
        for partition in range(3):
            kafka.produce(inp, ((None, line.encode()) for line in more[partition::3]),
                          partition=partition)
        kafka.produce(inp, [(None, b"\xff\xfe not utf-8")])  # a deserialization error
        expected += word_counts(more)
        wait_output_counts(kafka, out, expected, 60)
        wait_until(lambda: _series(_scrape(port), "kstream_dropped_records_total",
                                   reason="deserialization")
                   and max(_series(_scrape(port), "kstream_dropped_records_total",
                                   reason="deserialization").values()) == 1,
                   30, "the bad record counted")
        after = _scrape(port)
        repartition = f"{app.config.application_id}-word-counts-repartition"
        for topic in (inp, repartition):
            for partition in range(3):
                labels = {"topic": topic, "partition": str(partition)}
                key = next(iter(_series(after, "kstream_partition_records_in_total", **labels)))
                grew = after[("kstream_partition_records_in_total", key)] - before.get(
                    ("kstream_partition_records_in_total", key), 0)
                assert grew > 0, (topic, partition)
                assert _series(after, "kstream_partition_consumer_lag", **labels), labels
        outs = _series(after, "kstream_partition_records_out_total", topic=inp)
        assert sum(outs.values()) > sum(_series(before, "kstream_partition_records_out_total",
                                                topic=inp).values())
        for hist in ("kstream_batch_process_seconds", "kstream_commit_seconds",
                     "kstream_end_to_end_latency_seconds"):
            count = f"{hist}_count"
            assert sum(_series(after, count).values()) > sum(_series(before, count).values())
            buckets = _series(after, f"{hist}_bucket")
            assert any(("le", "+Inf") in lab for lab in buckets)
        sizes = _series(after, "kstream_store_approximate_entries", store="word-counts")
        assert len(sizes) == 3 and sum(sizes.values()) >= len(expected)
        assert len(_series(after, "kstream_restore_remaining_offsets", store="word-counts")) == 3
        assert _series(after, "kstream_restoring") and max(
            _series(after, "kstream_restoring").values()) == 0
        late = _series(after, "kstream_dropped_records_total", reason="late")
        assert late and max(late.values()) == 0


def test_status_page_in_a_headless_browser(kafka: KafkaCluster, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the status "
                    "page test needs a real browser")
    port = free_port()
    app, inp, out = _app(kafka, tmp_path, port)
    with running_app(app):
        wait_until(lambda: http_get(port, "/ready")[0] == 200, 60, "ready")
        sent = lines_for(0, 200)
        produce_lines(kafka, inp, sent)
        wait_output_counts(kafka, out, word_counts(sent), 60)

        def all_lags_known() -> list[dict[str, object]]:
            status, body = http_get(port, "/status.json")
            parts = body["partitions"] if status == 200 else []
            return parts if len(parts) == 6 and all(p["lag"] is not None for p in parts) \
                else []

        partitions = wait_until(all_lags_known, 30, "a lag figure for all 6 partitions")
        dom = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
             "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'chromium'}",
             "--dump-dom", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=120, check=True).stdout
    assert '<svg id="topology-diagram"' in dom
    for label in ("word-counts", inp, out, "Sub-topology 0", "Sub-topology 1"):
        assert f">{label}</text>" in dom, label
    for p in partitions:
        cell = re.search(rf'<td class="lag" id="lag-{re.escape(str(p["topic"]))}-'
                         rf'{p["partition"]}">(\d+)</td>', dom)
        assert cell is not None, f"no lag figure for {p['topic']}[{p['partition']}]"
    assert re.search(r'<span id="state" class="badge ready">ready</span>', dom)
