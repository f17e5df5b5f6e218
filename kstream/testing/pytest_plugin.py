"""pytest plugin: a session-wide real Kafka cluster and per-test helpers.

Registered through the `pytest11` entry point, so any project that installs kstream gets the
`kafka` fixture.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstream.testing.cluster import provide_cluster
from kstream.testing.kafka import KafkaCluster, bootstrap_from_env

_SHARED = pytest.StashKey[contextlib.ExitStack]()


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n N`), one cluster for every worker: the controlling process
    starts it before the workers exist and hands them its address through
    KSTREAM_BOOTSTRAP_SERVERS, so N workers do not start N brokers on 2 cores."""
    if os.environ.get("PYTEST_XDIST_WORKER") or bootstrap_from_env():
        return
    if not getattr(config.option, "numprocesses", None):
        return
    stack = contextlib.ExitStack()
    cluster = stack.enter_context(provide_cluster())
    os.environ["KSTREAM_BOOTSTRAP_SERVERS"] = cluster.bootstrap_servers
    config.stash[_SHARED] = stack


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_SHARED, None)
    if stack is not None:
        os.environ.pop("KSTREAM_BOOTSTRAP_SERVERS", None)
        stack.close()


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaCluster]:
    """The real Kafka cluster for this test session (env, Docker, or the local launcher)."""
    with provide_cluster() as cluster:
        yield cluster


@pytest.fixture
def topic_factory(kafka: KafkaCluster) -> Iterator[object]:
    """Create uniquely named topics for one test; they are deleted afterwards."""
    created: list[str] = []

    def make(partitions: int = 1, prefix: str = "t", config: dict[str, str] | None = None) -> str:
        name = kafka.create_topic(kafka.unique_name(prefix), partitions, config)
        created.append(name)
        return name

    yield make
    if created:
        kafka.delete_topics(created)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path
