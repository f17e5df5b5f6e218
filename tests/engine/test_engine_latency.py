"""Adaptive batching: a lone record is processed at once, not after the poll timeout; and
what exists when the loop starts is frozen out of the cyclic garbage collector's scans.

librdkafka's consume(n, timeout) returns only when n records are there or the timeout has
passed; the engine takes what has arrived instead (Engine._consume). With poll_timeout_ms at
5 s and batch_size 1000, the old loop held a lone record for the full 5 s.
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from kstream import App, StreamBuilder
from kstream.testing import KafkaCluster, wait_until

POLL_TIMEOUT_MS = 5000
PROMPT_S = 1.5  # well under the poll timeout; generous for a shared 2-core machine


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_lone_record_is_processed_promptly(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                             tmp_path: Path, guarantee: str) -> None:
    inp, out = topic_factory(partitions=1), topic_factory(partitions=1)
    b = StreamBuilder()
    b.stream(inp, "string", "string").map_values(str.upper).to(out, "string", "string")
    app = App(b, application_id=kafka.unique_name("lone"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee=guarantee,
              state_dir=str(tmp_path / "state"), poll_timeout_ms=POLL_TIMEOUT_MS,
              batch_size=1000, commit_interval_ms=100)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            app.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    reader = Consumer(kafka.config(**{"group.id": kafka.unique_name("reader"),
                                      "isolation.level": "read_committed",
                                      "fetch.wait.max.ms": 10}))
    reader.assign([TopicPartition(out, 0, OFFSET_BEGINNING)])
    producer = Producer(kafka.config(**{"linger.ms": 0}))

    def round_trip(value: str) -> float:
        """Seconds from sending `value` until its output is readable (read_committed)."""
        began = time.monotonic()
        producer.produce(inp, value.encode(), b"k")
        producer.flush(10)
        deadline = began + 60
        while time.monotonic() < deadline and not failures:
            for msg in reader.consume(10, 0.02):
                if msg.error() is None and msg.value() == value.upper().encode():
                    return time.monotonic() - began
        raise AssertionError(f"{value!r} not processed within 60 s (failures: {failures})")

    thread.start()
    try:
        wait_until(lambda: app.stats.get("rebalances", 0) > 0 or failures, 60, "assignment")
        round_trip("warm-up")  # the first one also waits for the group join and the fetch
        took = [round_trip(f"lone-{i}") for i in range(3)]
        assert max(took) < PROMPT_S, f"lone records took {took} s (poll timeout 5 s)"
        assert app.stats["records_in"] == 4
        # Engine.run froze the startup objects: a full collection no longer scans them (full
        # collections of 34-112 ms stalled the loop in bench/latency.py before).
        assert gc.get_freeze_count() > 1000
    finally:
        app.stop()
        thread.join(60)
        reader.close()
    assert not failures, failures
    assert gc.get_freeze_count() == 0  # undone when the run ended: nothing stays frozen
