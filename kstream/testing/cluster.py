"""Choose the Kafka cluster for a test session: env → Docker (testcontainers) → local launcher."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from kstream.broker import KAFKA_VERSION, LocalBroker, check_transactions, free_port
from kstream.testing.kafka import KafkaCluster, bootstrap_from_env

log = logging.getLogger("kstream.testing")


def docker_available() -> bool:
    """True when a Docker engine answers a ping (the CLI alone is not enough)."""
    try:
        import docker  # shipped with testcontainers
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def _container_cluster() -> Iterator[KafkaCluster]:
    from testcontainers.core.container import DockerContainer

    port = free_port()
    # The advertised listener must name the host-side port, so publish it on the same number.
    container = (
        DockerContainer(f"apache/kafka:{KAFKA_VERSION}")
        .with_bind_ports(port, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                  "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "3000")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_LOG_RETENTION_MS", "-1")  # fixed historic timestamps in tests
    )
    with container:
        bootstrap = f"127.0.0.1:{port}"
        check_transactions(bootstrap, timeout=120)
        yield KafkaCluster(bootstrap)


@contextlib.contextmanager
def provide_cluster() -> Iterator[KafkaCluster]:
    """Yield a real Kafka cluster for the whole session, in the documented order of preference."""
    bootstrap = bootstrap_from_env()
    if bootstrap:
        log.info("using KSTREAM_BOOTSTRAP_SERVERS=%s", bootstrap)
        yield KafkaCluster(bootstrap)
        return
    if docker_available():
        log.info("using testcontainers apache/kafka:%s", KAFKA_VERSION)
        with _container_cluster() as cluster:
            yield cluster
        return
    log.info("using the local broker launcher (Kafka %s)", KAFKA_VERSION)
    with LocalBroker() as broker:
        yield KafkaCluster(broker.bootstrap_servers)
