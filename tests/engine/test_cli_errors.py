"""Expected failures end in one clear line and a distinct exit code; settings that would break
guarantees are refused at construction."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kstream import App, ConfigError, StreamBuilder
from kstream.broker import free_port
from kstream.cli import exit_code
from kstream.errors import KafkaUnreachableError

APPS = Path(__file__).parent / "apps"


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kstream.cli", *args], cwd=APPS,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def test_unreachable_broker_is_one_line_naming_the_servers(tmp_path: Path) -> None:
    servers = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {"STUCK_APP_BOOTSTRAP": servers, "STUCK_APP_ID": "cli-errors",
           "STUCK_APP_INPUT": "in", "STUCK_APP_OUTPUT": "out",
           "STUCK_APP_STATE_DIR": str(tmp_path / "state"), "KSTREAM_LOG_LEVEL": "ERROR"}
    began = time.monotonic()
    proc = run_cli("run", "stuck_app:app", env=env, timeout=60)
    took = time.monotonic() - began
    assert proc.returncode == exit_code(KafkaUnreachableError("x")) == 4, proc.stderr[-2000:]
    assert took < 15, f"took {took:.1f}s"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kstream:")]
    assert len(lines) == 1 and servers in lines[0] and "cannot reach Kafka" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_app_module_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", "no_such_module:app")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("kstream: ConfigError: cannot import 'no_such_module'")
    assert "Traceback" not in proc.stderr


def _app(**settings: object) -> App:
    b = StreamBuilder()
    b.stream("in").to("out")
    return App(b, application_id="x", bootstrap_servers="127.0.0.1:1", **settings)


@pytest.mark.parametrize("key", ["partition.assignment.strategy", "group.protocol",
                                 "group.instance.id"])
def test_consumer_settings_that_break_guarantees_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _app(consumer_config={key: "x"})


def test_acks_below_all_is_refused_unless_at_most_once() -> None:
    with pytest.raises(ConfigError, match="acks"):
        _app(processing_guarantee="exactly_once", producer_config={"acks": "1"})
    with pytest.raises(ConfigError, match="acks"):
        _app(processing_guarantee="at_least_once", producer_config={"acks": 0})
    _app(processing_guarantee="at_most_once", producer_config={"acks": "1"})


def test_a_string_where_an_integer_belongs_is_named() -> None:
    with pytest.raises(ConfigError, match=r"commit_interval_ms must be an integer, got '100'"):
        _app(commit_interval_ms="100")
