"""SIGTERM stops an instance within shutdown_timeout_ms whatever it waits on; a stop while
Kafka is away is a clean stop; a stuck loop is reported by the watchdog with its stack."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from engine_helpers import AppProcess

from kstream.broker import LocalBroker, free_port
from kstream.runtime.watchdog import FORCED_EXIT_CODE
from kstream.testing import KafkaCluster, wait_until

# Timing-sensitive (each runs its own broker and measures how fast instances resume or stop):
# one xdist worker runs them one after another, never two at once.
pytestmark = pytest.mark.xdist_group("own-broker")


def env_for(kafka: KafkaCluster, tmp_path: Path, inp: str, out: str) -> dict[str, str]:
    return {"STUCK_APP_BOOTSTRAP": kafka.bootstrap_servers,
            "STUCK_APP_ID": kafka.unique_name("stuck"), "STUCK_APP_INPUT": inp,
            "STUCK_APP_OUTPUT": out, "STUCK_APP_STATE_DIR": str(tmp_path / "state"),
            "KSTREAM_LOG_LEVEL": "INFO"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(data_dir=tmp_path / "broker", port=free_port()).start()
    yield broker
    broker.stop()


def test_stuck_loop_is_reported_and_sigterm_still_stops_it(
        own_broker: LocalBroker, tmp_path: Path, app_processes: list[AppProcess]) -> None:
    # Its own broker: the forced exit leaves a transaction open until the broker times it
    # out; that stays off the broker the other tests share.
    kafka = KafkaCluster(own_broker.bootstrap_servers)
    inp = kafka.create_topic(kafka.unique_name("in"))
    out = kafka.create_topic(kafka.unique_name("out"))
    proc = AppProcess("stuck_app", env_for(kafka, tmp_path, inp, out),
                      tmp_path / "app.log").start()
    app_processes.append(proc)
    kafka.produce(inp, [(b"a", orjson.dumps({"n": 1})), (b"b", orjson.dumps({"stuck": True}))])
    wait_until(lambda: "event=stalled" in proc.log_path.read_text(errors="replace"), 60,
               "the watchdog to report the stuck loop")
    log = proc.log_path.read_text(errors="replace")
    assert "block_when_stuck" in log  # the stack names the user function it is stuck in
    began = time.monotonic()
    code = proc.terminate(timeout=30)
    took = time.monotonic() - began
    assert code == FORCED_EXIT_CODE, proc.log_tail()
    assert took < 4 + 3, f"stopped after {took:.1f}s; shutdown_timeout_ms is 4 s"
    assert "event=shutdown_timeout" in proc.log_path.read_text(errors="replace")


def test_stop_during_an_outage_is_a_clean_stop(own_broker: LocalBroker, tmp_path: Path,
                                               app_processes: list[AppProcess]) -> None:
    kafka = KafkaCluster(own_broker.bootstrap_servers)
    inp = kafka.create_topic(kafka.unique_name("in"))
    out = kafka.create_topic(kafka.unique_name("out"))
    env = env_for(kafka, tmp_path, inp, out)
    proc = AppProcess("stuck_app", env, tmp_path / "app.log").start()
    app_processes.append(proc)
    kafka.produce(inp, [(b"a", orjson.dumps({"n": 1}))])
    kafka.read_topic(out, min_count=1, timeout=60)
    own_broker.kill()
    wait_until(lambda: "event=client_error" in proc.log_path.read_text(errors="replace")
               or not proc.alive(), 60, "the instance to notice the outage")
    assert proc.alive(), proc.log_tail()
    began = time.monotonic()
    assert proc.terminate(timeout=30) == 0, proc.log_tail()
    assert time.monotonic() - began < 4 + 3
