"""docker-compose.yml and Dockerfile: structure checks (no Docker engine is needed to run these).

The Kafka settings follow the apache/kafka image's documented environment variables (every
KAFKA_* variable becomes a server property); the app service must be scalable.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from kstream import cli
from kstream.broker import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


@pytest.fixture(scope="module")
def kafka_env(services: dict[str, dict]) -> dict[str, str]:
    env = services["kafka"]["environment"]
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_kafka_is_a_single_kraft_node(kafka_env: dict[str, str],
                                      services: dict[str, dict]) -> None:
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    roles = set(kafka_env["KAFKA_PROCESS_ROLES"].split(","))
    assert roles == {"broker", "controller"}
    node = kafka_env["KAFKA_NODE_ID"]
    voters = kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1 and voters[0].startswith(f"{node}@")
    controller = kafka_env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(re.findall(r"(\w+)://[^:,]*:(\d+)", kafka_env["KAFKA_LISTENERS"]))
    assert voters[0].endswith(f":{listeners[controller]}")
    protocols = dict(p.split(":") for p in kafka_env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
                     .split(","))
    assert set(listeners) <= set(protocols)
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert listeners["PLAINTEXT"] == "9092"
    assert services["kafka"].get("hostname", "kafka") == "kafka"


def test_kafka_internal_topics_fit_one_node(kafka_env: dict[str, str]) -> None:
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert kafka_env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_kafka_has_a_healthcheck(services: dict[str, dict]) -> None:
    check = services["kafka"]["healthcheck"]
    test = " ".join(argv(check["test"]))
    assert "/opt/kafka/bin/" in test and "localhost:9092" in test
    assert check.get("retries", 0) >= 3


def test_app_is_built_here_and_scalable(services: dict[str, dict]) -> None:
    app = services["app"]
    assert app["build"] in (".", {"context": "."}) or app["build"].get("context") == "."
    command = argv(app["command"])
    assert command[:2] == ["kstream", "run"]
    assert command[command.index("--bootstrap-servers") + 1] == "kafka:9092"
    assert "container_name" not in app  # `--scale app=3` needs generated names
    assert "ports" not in app  # and no host port to collide on
    assert "volumes" not in app  # state stays inside each container
    assert app["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_dockerfile_runs_the_app_command(services: dict[str, dict]) -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "pip install ." in runs
    [cmd] = [json.loads(arg) for op, arg in instructions if op == "CMD"]
    assert not [op for op, _ in instructions if op == "ENTRYPOINT"]
    assert cmd == argv(services["app"]["command"])  # `docker run` and compose agree


def test_the_commands_executable_exists() -> None:
    """`kstream` is this package's console script and `run` is one of its subcommands."""
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert [ep.value for ep in scripts if ep.name == "kstream"] == ["kstream.cli:main"]
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "--help"])
    assert done.value.code == 0


def test_the_commands_topology_module_is_packaged() -> None:
    spec = importlib.util.find_spec("topologies")
    assert spec is not None, "the topologies package must be importable (and installed by pip)"
    if importlib.util.find_spec("topologies.wordcount") is None:
        pytest.skip("topologies/wordcount.py is not written yet")
