"""A fenced producer: the instance drops its tasks, rejoins, never keeps writing; output exact."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from kstream import App, StreamBuilder
from kstream.testing import KafkaCluster, running_app, wait_until
from serdes import JsonSerde, StringSerde

RECORDS = 12_000
LATE = 2000  # produced after the fence, so the app must write again either way


GATE = threading.Event()  # cleared: processing pauses, so the fence lands deterministically
PAUSED = threading.Event()


def slow_double(v: dict) -> str:  # type: ignore[type-arg]
    if not GATE.is_set():
        PAUSED.set()
        GATE.wait(60)
    end = time.perf_counter() + 0.0003
    while time.perf_counter() < end:  # bounded busy work, so the run spans a few seconds
        pass
    return str(v["id"] * 2)


def test_fenced_instance_rejoins_and_output_stays_exact(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture) -> None:
    GATE.set()
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    kafka.produce(inp, ((str(i).encode(), orjson.dumps({"id": i})) for i in range(RECORDS)))
    b = StreamBuilder()
    b.stream(inp, StringSerde(), JsonSerde()).map_values(slow_double) \
        .to(out, value_serde=StringSerde())
    app_id = kafka.unique_name("fence")
    app = App(b, application_id=app_id, bootstrap_servers=kafka.bootstrap_servers,
              processing_guarantee="exactly_once", state_dir=tmp_path, batch_size=100)
    caplog.set_level(logging.WARNING, logger="kstream.engine")
    with running_app(app) as run:
        wait_until(lambda: app.stats.get("commits", 0) >= 3, 60, "a few commits")
        GATE.clear()
        PAUSED.wait(30)  # the app is mid-transaction, inside a record
        instance_id = (tmp_path / app_id / "kstream.id").read_text().strip()
        zombie_killer = Producer({"bootstrap.servers": kafka.bootstrap_servers,
                                  "transactional.id": f"{app_id}-{instance_id}"})
        zombie_killer.init_transactions(30)  # bumps the epoch: the app's producer is fenced
        GATE.set()
        kafka.produce(inp, ((str(i).encode(), orjson.dumps({"id": i}))
                            for i in range(RECORDS, RECORDS + LATE)))
        wait_until(lambda: "event=fenced" in caplog.text, 60, "the app to notice the fence")
        records = kafka.read_topic(out, min_count=RECORDS + LATE, timeout=120)
    assert not run.alive()
    got = Counter(r.value.decode() for r in records)  # type: ignore[union-attr]
    assert got == Counter(str(i * 2) for i in range(RECORDS + LATE))
