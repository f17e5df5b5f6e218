"""The local broker launcher: a real start/stop, the CLI, and one clear error per failure cause.

Two extra brokers start here (the launcher itself and the CLI's background broker), ~8 s each;
every failure case fails before a JVM is launched or within a second of it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kstream import broker
from kstream.broker import BrokerError, LocalBroker
from kstream.testing import KafkaCluster, wait_until

# These start brokers of their own: one xdist worker runs them (with the other own-broker
# tests) one after another, so at most two JVMs share the 2 cores.
pytestmark = pytest.mark.xdist_group("own-broker")

REAL_JAVA = shutil.which("java")


@pytest.fixture(scope="module")
def cached_jars() -> Path:
    """The real Maven-resolved jar cache (resolved once if needed) before any env is changed."""
    return broker.resolve_jars()


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def only_java_on_path(tmp_path: Path) -> Path:
    """A bin dir holding just `java`, so PATH can exclude the real mvn."""
    assert REAL_JAVA, "these tests need java on PATH"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(os.path.realpath(REAL_JAVA))
    return bin_dir


# ---------------------------------------------------------------- a real start and stop


def test_start_produce_read_stop(tmp_path: Path, cached_jars: Path) -> None:
    data_dir = tmp_path / "broker"
    with LocalBroker(data_dir=data_dir) as local:
        assert local.process is not None and local.process.poll() is None
        assert (data_dir / "logs" / "meta.properties").exists()
        cluster = KafkaCluster(local.bootstrap_servers)
        topic = cluster.create_topic(partitions=2)
        cluster.produce(topic, [(b"k", b"v")], partition=1)
        [record] = cluster.read_topic(topic, min_count=1, timeout=30)
        assert (record.partition, record.key, record.value) == (1, b"k", b"v")
        process, port = local.process, local.port
    assert local.process is None and process.poll() is not None
    assert not broker._accepts(port or 0)
    assert data_dir.exists()  # a caller-supplied data dir is left in place


def test_broker_dying_during_start_is_one_clear_error(tmp_path: Path, cached_jars: Path) -> None:
    """A data dir formatted for another node makes Kafka exit at once; the error says so."""
    logs = tmp_path / "broker" / "logs"
    logs.mkdir(parents=True)
    (logs / "meta.properties").write_text(
        "version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n"
        "directory.id=AAAAAAAAAAAAAAAAAAAAAQ\n")
    local = LocalBroker(data_dir=tmp_path / "broker", ready_timeout=60)
    with pytest.raises(BrokerError) as raised:
        local.start()
    message = str(raised.value)
    assert "exited with code 1 during start-up" in message
    assert "Stored node id 7" in message  # the log tail carries Kafka's own reason
    assert f"remove {tmp_path / 'broker'}" in message
    assert local.process is None


# ---------------------------------------------------------------- failures: cause and fix


def test_no_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "jdk"
    empty.mkdir()
    monkeypatch.setenv("JAVA_HOME", str(empty))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(BrokerError, match=r"Java not found: JAVA_HOME=.*has no bin/java") as raised:
        LocalBroker(data_dir=tmp_path / "data").start()
    assert "Point JAVA_HOME at a Java 17+" in str(raised.value)

    monkeypatch.delenv("JAVA_HOME")
    with pytest.raises(BrokerError, match="Java not found") as raised:
        LocalBroker(data_dir=tmp_path / "data").start()
    assert "openjdk-17-jre-headless" in str(raised.value)
    assert not (tmp_path / "data").exists()


def test_port_taken(tmp_path: Path, cached_jars: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        local = LocalBroker(data_dir=tmp_path / "data", port=port)
        with pytest.raises(BrokerError, match=f"Port {port} on 127.0.0.1 is already in use") as e:
            local.start()
    assert "choose another --port" in str(e.value)
    assert local.process is None and not (tmp_path / "data").exists()


def test_maven_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("KSTREAM_KAFKA_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    bin_dir = only_java_on_path(tmp_path)
    script(bin_dir / "mvn", "echo '[ERROR] Could not transfer artifact: Network is unreachable'\n"
                            "exit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BrokerError) as raised:
        LocalBroker(data_dir=tmp_path / "data").start()
    message = str(raised.value)
    assert message.startswith("Maven could not resolve Apache Kafka 4.1.1 (mvn exit 1)")
    assert "Check network access to Maven Central" in message
    assert "Network is unreachable" in message  # Maven's own output is passed on
    target = tmp_path / "cache" / "kstream" / "kafka-4.1.1"
    assert not (target / ".complete").exists()
    assert not list(target.glob("libs-*"))  # no staging directory left behind

    (bin_dir / "mvn").unlink()
    with pytest.raises(BrokerError, match=r"Maven \(`mvn`\) not found") as raised:
        LocalBroker(data_dir=tmp_path / "data").start()
    assert "apt-get install maven" in str(raised.value)


def test_incomplete_cache_is_resolved_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            cached_jars: Path) -> None:
    """A marker without its jars (a cleaned-out libs dir) triggers resolution, not a bad start."""
    target = tmp_path / "cache" / "kstream" / "kafka-4.1.1"
    (target / "libs").mkdir(parents=True)
    (target / ".complete").write_text("4.1.1")
    bin_dir = only_java_on_path(tmp_path)
    # Stand-in for mvn that "resolves" from the real cache: copies its jars to -DoutputDirectory.
    script(bin_dir / "mvn", "PATH=/usr/bin:/bin\n"
                            'for a in "$@"; do case "$a" in -DoutputDirectory=*) '
                            'out="${a#-DoutputDirectory=}";; esac; done\n'
                            f'mkdir -p "$out" && cp {cached_jars}/*.jar "$out"/\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("KSTREAM_KAFKA_HOME", raising=False)

    libs = broker.resolve_jars()
    assert libs == target / "libs"
    jars = sorted(p.name for p in libs.glob("*.jar"))
    assert "kafka_2.13-4.1.1.jar" in jars
    assert (target / ".complete").read_text().split() == ["4.1.1", *jars]

    (libs / "kafka-server-4.1.1.jar").unlink()  # a jar the marker lists goes missing
    (bin_dir / "mvn").unlink()
    with pytest.raises(BrokerError, match="Maven"):
        broker.resolve_jars()  # not trusted any more: it must resolve again


def test_kafka_home_without_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kafka" / "libs").mkdir(parents=True)
    monkeypatch.setenv("KSTREAM_KAFKA_HOME", str(tmp_path / "kafka"))
    with pytest.raises(BrokerError) as raised:
        LocalBroker(data_dir=tmp_path / "data").start()
    message = str(raised.value)
    assert f"KSTREAM_KAFKA_HOME={tmp_path / 'kafka'} has no libs/kafka_*.jar" in message
    assert "unset it to resolve the jars with Maven" in message


# ---------------------------------------------------------------- the CLI


def test_cli_broker_start_status_stop(tmp_path: Path, cached_jars: Path) -> None:
    cache = tmp_path / "xdg"
    (cache / "kstream").mkdir(parents=True)
    # Share the resolved jars; keep the CLI's broker.json and data dir private to this test.
    (cache / "kstream" / "kafka-4.1.1").symlink_to(cached_jars.parent)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("KSTREAM_KAFKA_HOME", None)
    cli = str(Path(sys.executable).with_name("kstream"))

    def kstream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, "broker", *args], env=env, capture_output=True, text=True,
                              timeout=150)

    state = cache / "kstream" / "broker.json"
    try:
        started = kstream("start")
        assert started.returncode == 0, started.stderr
        bootstrap = started.stdout.strip()
        assert bootstrap.startswith("127.0.0.1:") and bootstrap.split(":")[1].isdigit()
        pid = json.loads(state.read_text())["pid"]
        assert broker._accepts(int(bootstrap.split(":")[1]))

        status = kstream("status")
        assert (status.returncode, status.stdout.strip()) == (0, bootstrap)

        stopped = kstream("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stderr
        wait_until(lambda: not broker._pid_alive(pid), 30, "the background broker to exit")
        assert not state.exists()

        after = kstream("status")
        assert after.returncode == 1 and "no broker running" in after.stderr
    finally:
        if state.exists():  # the test failed half-way: do not leak a broker
            pid = json.loads(state.read_text())["pid"]
            if broker._pid_alive(pid) and broker._is_broker(pid):
                os.kill(pid, 9)
