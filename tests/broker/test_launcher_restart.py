"""Restarting the local broker on its data dir: after SIGKILL, after a graceful stop, via the CLI.

Also the two start-up flakes the restart work uncovered: cluster ids that StorageTool read as an
option, and ports in TIME_WAIT counted as taken. Real brokers throughout (~15 s per restart
after SIGKILL, ~7 s after a graceful stop; see TIMINGS.md).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from kstream import broker
from kstream.broker import LocalBroker
from kstream.testing import KafkaCluster, wait_until

# These start brokers of their own: one xdist worker runs them (with the other own-broker
# tests) one after another, so at most two JVMs share the 2 cores.
pytestmark = pytest.mark.xdist_group("own-broker")

N = 2000
B64URL_22 = re.compile(r"[A-Za-z0-9_-]{22}")


@pytest.fixture(scope="module")
def cached_jars() -> Path:
    return broker.resolve_jars()


def fill(bootstrap: str) -> str:
    """A 2-partition topic with N acknowledged records and one aborted transaction."""
    cluster = KafkaCluster(bootstrap)
    topic = cluster.create_topic(partitions=2)
    cluster.produce(topic, [(b"k%d" % i, b"v%d" % i) for i in range(N)])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for _ in range(5):
        producer.produce(topic, value=b"v", key=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)
    cluster.close()
    return topic


def assert_all_there(bootstrap: str, topic: str) -> None:
    cluster = KafkaCluster(bootstrap)
    records = cluster.read_topic(topic, timeout=40, min_count=N)  # read_committed
    assert sorted(r.key for r in records) == sorted(b"k%d" % i for i in range(N))
    assert {r.value for r in records if r.key == b"k7"} == {b"v7"}
    cluster.create_topic(partitions=1)  # the KRaft controller takes metadata writes again
    cluster.close()


def controller_port(data_dir: Path) -> int | None:
    return broker._stored_ports(data_dir / "server.properties")[1]


# ---------------------------------------------------------------- restarts on the same data dir


def test_kill_then_start_keeps_topics_and_committed_data(tmp_path: Path,
                                                         cached_jars: Path) -> None:
    data_dir = tmp_path / "broker"
    local = LocalBroker(data_dir=data_dir, ready_timeout=60)
    local.start()
    try:
        topic = fill(local.bootstrap_servers)
        port, voters, process = local.port, controller_port(data_dir), local.process
        assert process is not None

        local.kill()
        assert process.returncode == -9 and local.process is None
        assert (data_dir / "logs" / "meta.properties").exists()

        meta = (data_dir / "logs" / "meta.properties").read_text()
        t0 = time.monotonic()
        local.start()  # at once: the killed broker's sockets in TIME_WAIT must not block it
        print(f"restart after SIGKILL: {time.monotonic() - t0:.1f}s")
        assert (local.port, controller_port(data_dir)) == (port, voters)
        assert (data_dir / "logs" / "meta.properties").read_text() == meta  # not reformatted
        assert_all_there(local.bootstrap_servers, topic)
    finally:
        local.stop()
    assert data_dir.exists()


def test_graceful_stop_then_start_keeps_data_of_owned_dir(cached_jars: Path) -> None:
    local = LocalBroker(ready_timeout=60)  # owns a temp data dir
    local.start()
    data_dir = local.data_dir
    assert data_dir is not None
    try:
        topic = fill(local.bootstrap_servers)
        port = local.port
        local.stop(keep_data=True)
        assert data_dir.exists() and not broker._accepts(port or 0)

        t0 = time.monotonic()
        local.start()
        print(f"restart after graceful stop: {time.monotonic() - t0:.1f}s")
        assert (local.port, local.data_dir) == (port, data_dir)
        assert_all_there(local.bootstrap_servers, topic)

        local.kill()
        assert data_dir.exists()  # kill never deletes, even a data dir the broker owns
    finally:
        local.stop()
    assert not data_dir.exists()  # a plain stop() still cleans up an owned temp dir


def test_start_while_running_is_a_clear_error(tmp_path: Path, cached_jars: Path) -> None:
    """Cheap: fails before any JVM is launched for the second start."""
    local = LocalBroker(data_dir=tmp_path / "broker")
    local.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(broker.BrokerError, match="already runs"):
            local.start()
    finally:
        local.kill()
    assert local.process is None


# ---------------------------------------------------------------- cluster ids


def test_cluster_ids_are_valid_kraft_ids() -> None:
    ids = [broker.new_cluster_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for cluster_id in ids:
        assert B64URL_22.fullmatch(cluster_id), cluster_id
        assert not cluster_id.startswith("-"), cluster_id
        raw = base64.urlsafe_b64decode(cluster_id + "==")
        assert len(raw) == 16 and int.from_bytes(raw, "big") > 1
        assert base64.urlsafe_b64encode(raw).decode().rstrip("=") == cluster_id
    # 20,000 draws cover both ends of the alphabet Kafka's parser cares about.
    assert any(i.startswith("_") for i in ids)


@pytest.mark.parametrize("first_byte", [0xFC, 0xF8], ids=["underscore", "dash"])
def test_storage_tool_formats_edge_cluster_ids(tmp_path: Path, cached_jars: Path,
                                               first_byte: int) -> None:
    """'_' is the edge new_cluster_id() draws; '-' (never drawn) proves the `--cluster-id=` form."""
    cluster_id = base64.urlsafe_b64encode(bytes([first_byte, *range(1, 16)])).decode()[:22]
    assert cluster_id[0] == ("_" if first_byte == 0xFC else "-")
    props = tmp_path / "server.properties"
    props.write_text(broker._server_properties(tmp_path, broker.free_port(), broker.free_port()))
    broker._format_storage([broker.find_java(), "-cp", broker.kafka_classpath()], props,
                           cluster_id)
    meta = (tmp_path / "logs" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}\n" in meta


# ---------------------------------------------------------------- the port check


def _time_wait_on(port: int) -> bool:
    """Linux: a TCP socket bound to 127.0.0.1:port is in TIME_WAIT (state 06)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(f[1] == local and f[3] == "06" for f in (line.split() for line in lines))


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_port_in_time_wait_is_free_but_a_listener_is_not() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert broker._port_taken(port)  # a LISTENing socket is taken

    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server side closes first, so TIME_WAIT is on `port`, as after a crash
    assert client.recv(1) == b""
    client.close()
    listener.close()
    wait_until(lambda: _time_wait_on(port), 10, f"a TIME_WAIT socket on port {port}")

    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # how the old check bound
    with plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    assert not broker._port_taken(port)


# ---------------------------------------------------------------- the CLI


def test_cli_data_dir_keeps_topics_across_restarts(tmp_path: Path, cached_jars: Path) -> None:
    cache = tmp_path / "xdg"
    (cache / "kstream").mkdir(parents=True)
    (cache / "kstream" / "kafka-4.1.1").symlink_to(cached_jars.parent)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("KSTREAM_KAFKA_HOME", None)
    cli = str(Path(sys.executable).with_name("kstream"))
    data_dir = tmp_path / "kafka-data"
    state = cache / "kstream" / "broker.json"

    def kstream(*args: str) -> str:
        done = subprocess.run([cli, "broker", *args], env=env, capture_output=True, text=True,
                              timeout=150)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def stop() -> None:
        pid = json.loads(state.read_text())["pid"]
        kstream("stop")
        wait_until(lambda: not broker._pid_alive(pid), 30, "the background broker to exit")

    try:
        bootstrap = kstream("start", "--data-dir", str(data_dir))
        cluster = KafkaCluster(bootstrap)
        topic = cluster.create_topic()
        cluster.close()
        stop()

        assert kstream("start", "--data-dir", str(data_dir)) == bootstrap  # same port again
        cluster = KafkaCluster(bootstrap)
        assert topic in cluster.admin.list_topics(timeout=10).topics
        cluster.close()
        stop()
        assert (data_dir / "logs" / "meta.properties").exists()
    finally:
        if state.exists():  # failed half-way: do not leak a broker
            pid = json.loads(state.read_text())["pid"]
            if broker._pid_alive(pid) and broker._is_broker(pid):
                os.kill(pid, 9)
