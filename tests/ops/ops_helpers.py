"""Helpers for the operations tests: app processes, HTTP calls, word-count inputs and the
counts a word-count's committed output says."""

from __future__ import annotations

import random
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from kstream.testing import AppProcess, KafkaCluster, wait_until

APPS_DIR = Path(__file__).parent / "apps"
WORDS = [f"w{i:02d}" for i in range(48)]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OpsProcess(AppProcess):
    """An app module of tests/ops/apps as an OS process (see kstream.testing.AppProcess)."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(module, env, log_path, cwd=APPS_DIR)


def ops_env(kafka: KafkaCluster, app_id: str, inp: str, out: str, state_dir: Path,
            port: int | None) -> dict[str, str]:
    env = {"OPS_BOOTSTRAP": kafka.bootstrap_servers, "OPS_APP_ID": app_id, "OPS_INPUT": inp,
           "OPS_OUTPUT": out, "OPS_STATE_DIR": str(state_dir), "KSTREAM_LOG_LEVEL": "INFO"}
    if port is not None:
        env["OPS_QUERY_PORT"] = str(port)
    return env


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON or text); status 0 when nothing answers on the port."""
    try:
        with _NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
            status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, body, ctype = err.code, err.read(), err.headers.get("Content-Type", "")
    except (urllib.error.URLError, OSError):
        return 0, None
    if "json" in ctype:
        return status, orjson.loads(body)
    return status, body.decode("utf-8", "replace")


def wait_ready(port: int, timeout: float, procs: list[OpsProcess] | None = None) -> None:
    def ready() -> bool:
        for p in procs or []:
            if not p.alive():
                raise AssertionError(f"app exited early:\n{p.log_tail()}")
        return http_get(port, "/ready")[0] == 200

    wait_until(ready, timeout, f"/ready on port {port}", interval=0.2)


def lines_for(round_no: int, count: int) -> list[str]:
    """`count` lines of 1-6 words; round 0 starts with every word once, so every word has a
    count from the first round on."""
    rng = random.Random(round_no)
    lines = [" ".join(WORDS[i:i + 6]) for i in range(0, len(WORDS), 6)] if round_no == 0 else []
    while len(lines) < count:
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))))
    return lines


def word_counts(lines: list[str]) -> Counter[str]:
    return Counter(word for line in lines for word in line.split())


def produce_lines(kafka: KafkaCluster, topic: str, lines: list[str]) -> None:
    kafka.produce(topic, ((None, line.encode()) for line in lines))


def committed_values(kafka: KafkaCluster, topic: str) -> dict[str, list[int]]:
    """Per word, the counts the committed output holds, in output order."""
    values: dict[str, list[int]] = {}
    for rec in kafka.read_topic(topic, timeout=60):
        assert rec.key is not None and rec.value is not None
        values.setdefault(rec.key.decode(), []).append(int.from_bytes(rec.value, "big",
                                                                      signed=True))
    return values


def wait_output_counts(kafka: KafkaCluster, topic: str, expected: Counter[str],
                       timeout: float, procs: list[OpsProcess] | None = None) -> None:
    """Until the committed output's latest count of every word equals `expected`."""
    def done() -> bool:
        for p in procs or []:
            if not p.alive():
                raise AssertionError(f"app exited early:\n{p.log_tail()}")
        latest = {w: vs[-1] for w, vs in committed_values(kafka, topic).items()}
        return latest == dict(expected)

    wait_until(done, timeout, f"committed counts on {topic}", interval=0.5)
