"""Local Apache Kafka launcher: real broker jars, KRaft mode, loopback only.

Why: tests and the demo must run against real Kafka on machines without Docker. The server
runtime is resolved from Maven Central with `mvn` once into a per-user cache; later starts
need no network. A single combined broker+controller is enough for transactions when the
internal topics are configured for one replica.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TypeVar

KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
DEFAULT_HEAP = "-Xms128m -Xmx512m"
T = TypeVar("T")


class BrokerError(RuntimeError):
    """The local broker could not be resolved, started or stopped; the message says how to fix."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kstream"


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no broker log)"
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------- Java and the server classpath


def find_java() -> str:
    """Return the java executable, checking it is at least Java 17 (Kafka 4 brokers need it)."""
    home = os.environ.get("JAVA_HOME")
    if home and not (Path(home) / "bin" / "java").exists():
        raise BrokerError(
            f"Java not found: JAVA_HOME={home} has no bin/java. Point JAVA_HOME at a Java "
            f"{MIN_JAVA}+ installation or unset it to use `java` from PATH."
        )
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java:
        raise BrokerError(
            f"Java not found: the local Kafka broker needs Java {MIN_JAVA} or newer. "
            "Install it (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME, "
            "or point KSTREAM_BOOTSTRAP_SERVERS at a running Kafka cluster."
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(
            f"{java} -version failed ({exc}): install a working Java {MIN_JAVA}+ "
            "or set JAVA_HOME to one."
        ) from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major or 'unknown'}; Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+. "
            "Install a newer JDK or set JAVA_HOME to one."
        )
    return java


def kafka_classpath(version: str = KAFKA_VERSION) -> str:
    """Classpath of the Kafka server: KSTREAM_KAFKA_HOME/libs, or the Maven-resolved cache."""
    home = os.environ.get("KSTREAM_KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise BrokerError(
                f"KSTREAM_KAFKA_HOME={home} has no libs/kafka_*.jar: point it at an unpacked "
                "Apache Kafka distribution, or unset it to resolve the jars with Maven."
            )
        return str(libs / "*")
    return str(resolve_jars(version) / "*")


def _required_jars(version: str) -> list[str]:
    return [f"kafka_2.13-{version}.jar", f"kafka-clients-{version}.jar",
            f"kafka-server-{version}.jar", f"kafka-raft-{version}.jar"]


def _cache_complete(target: Path, version: str) -> bool:
    """True when the cache's marker exists and every jar it lists (or the core jars) is there."""
    marker = target / ".complete"
    try:
        lines = marker.read_text().split()
    except OSError:
        return False
    if not lines or lines[0] != version:
        return False
    jars = lines[1:] or _required_jars(version)
    libs = target / "libs"
    return all((libs / jar).is_file() for jar in jars)


def resolve_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the server jars with mvn into the cache, once; concurrent callers wait on a lock.

    A cache whose marker or jars are missing (an interrupted resolution, a cleaned-out libs
    directory) is resolved again rather than started from.
    """
    target = cache_root() / f"kafka-{version}"
    libs = target / "libs"
    if _cache_complete(target, version):
        return libs
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cache_complete(target, version):
            return libs
        (target / ".complete").unlink(missing_ok=True)
        mvn = shutil.which("mvn")
        if not mvn:
            raise BrokerError(
                "Maven (`mvn`) not found: it resolves the Kafka server jars once. Install it "
                "(e.g. `apt-get install maven`), or set KSTREAM_KAFKA_HOME to a Kafka install, "
                "or KSTREAM_BOOTSTRAP_SERVERS to a running cluster."
            )
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=target))
        try:
            _run_maven(mvn, version, staging)
            if libs.exists():
                shutil.rmtree(libs)
            (staging / "libs").rename(libs)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        (target / ".complete").write_text("\n".join([version, *jars]) + "\n")
    return libs


def _run_maven(mvn: str, version: str, staging: Path) -> None:
    pom = staging / "pom.xml"
    pom_text = resources.files("kstream").joinpath("_broker/pom.xml").read_text()
    pom.write_text(pom_text.replace(f"<kafka.version>{KAFKA_VERSION}<",
                                    f"<kafka.version>{version}<"))
    cmd = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging / 'libs'}", "-DincludeScope=runtime"]
    fix = ("Check network access to Maven Central and ~/.m2/settings.xml, then retry; "
           "or set KSTREAM_KAFKA_HOME to an unpacked Kafka distribution.")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"Maven could not resolve Apache Kafka {version}: {exc}. {fix}") from exc
    resolved = (staging / "libs").is_dir() and all(
        (staging / "libs" / jar).is_file() for jar in _required_jars(version))
    if proc.returncode != 0 or not resolved:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise BrokerError(
            f"Maven could not resolve Apache Kafka {version} (mvn exit {proc.returncode}). "
            f"{fix}\n{tail}"
        )


# ---------------------------------------------------------------- the broker process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    """True when the broker could not bind `port`: something LISTENs on it.

    Binds like the JVM does (SO_REUSEADDR), so sockets left in TIME_WAIT by a killed broker do
    not count as taken: Kafka rebinds them at once, and a restart must not wait ~60 s for them.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "logs"),
        "num.partitions": "1",
        # One node: every internal topic has one replica, or transactions never become ready.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Short-lived test groups: let the broker notice dead members quickly.
        "group.consumer.session.timeout.ms": "10000",
        "group.consumer.min.session.timeout.ms": "3000",
        "group.min.session.timeout.ms": "3000",
        "transaction.max.timeout.ms": "900000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "auto.create.topics.enable": "false",
        # No time-based retention: tests, demos and samples use fixed historic timestamps,
        # which the default 7 days would delete at the next retention check (every 5 min).
        "log.retention.ms": "-1",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def _stored_ports(props: Path) -> tuple[int | None, int | None]:
    """(client port, controller port) of an earlier start's server.properties, if readable.

    Why: a restart on the same data dir should come back on the same addresses, so clients'
    bootstrap strings and the KRaft voter endpoint stay what they were.
    """
    try:
        text = props.read_text()
    except OSError:
        return None, None
    client = re.search(r"^listeners=.*PLAINTEXT://127\.0\.0\.1:(\d+)", text, re.M)
    controller = re.search(r"^controller\.quorum\.voters=1@127\.0\.0\.1:(\d+)\s*$", text, re.M)
    return (int(client.group(1)) if client else None,
            int(controller.group(1)) if controller else None)


@dataclass
class LocalBroker:
    """A single-node KRaft Kafka on loopback. Use `start()`/`stop()` or as a context manager.

    Restartable: after `stop(keep_data=True)` or `kill()`, `start()` again reuses the same data
    dir and port, keeping topics and committed data. A `data_dir` already formatted by an earlier
    run is started as it is (never reformatted), on the ports it used before when they are free.
    """

    data_dir: Path | None = None
    port: int | None = None
    heap: str = DEFAULT_HEAP
    version: str = KAFKA_VERSION
    ready_timeout: float = 90.0
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _owns_data_dir: bool = field(default=False, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "broker.log"

    def start(self, detach: bool = False) -> LocalBroker:
        if self.process is not None and self.process.poll() is None:
            raise BrokerError(
                f"This broker already runs (pid {self.process.pid}) at {self.bootstrap_servers}: "
                "call stop() or kill() before start().")
        java = find_java()
        classpath = kafka_classpath(self.version)
        if self.port is not None and _port_taken(self.port):
            raise BrokerError(
                f"Port {self.port} on 127.0.0.1 is already in use: stop what holds it "
                "(`kstream broker stop` if it is an earlier broker) or choose another --port."
            )
        if self.port is None and self.data_dir is not None:
            stored, _ = _stored_ports(self.data_dir / "server.properties")
            if stored is not None and not _port_taken(stored):
                self.port = stored
        self.port = self.port or free_port()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="kstream-kafka-"))
            self._owns_data_dir = True
        # A failed restart must not delete the data it was meant to bring back.
        restarting = (self.data_dir / "logs" / "meta.properties").exists()
        try:
            self._launch(java, classpath, detach)
            self._wait_ready()
        except BaseException:
            self.stop(keep_data=restarting)
            raise
        return self

    def _launch(self, java: str, classpath: str, detach: bool) -> None:
        assert self.data_dir is not None and self.port is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(_server_properties(self.data_dir, self.port, self._controller_port(props)))
        log4j = resources.files("kstream").joinpath("_broker/log4j2.properties")
        log4j_file = self.data_dir / "log4j2.properties"
        log4j_file.write_text(log4j.read_text())
        jvm = [java, *self.heap.split(), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
               "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j_file}",
               "-cp", classpath]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            _format_storage(jvm, props, new_cluster_id())
        # The child keeps its own copy of the descriptor; ours is closed when Popen returns.
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=detach)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not _accepts(self.port or 0):
            self._check_alive()
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"Kafka did not open port {self.port} within {self.ready_timeout:.0f}s. "
                    f"Broker log tail ({self.log_path}):\n{_log_tail(self.log_path)}")
            time.sleep(0.1)
        remaining = max(5.0, deadline - time.monotonic())
        try:
            check_transactions(self.bootstrap_servers, timeout=remaining, alive=self._check_alive)
        except BrokerError:
            raise
        except Exception as exc:
            self._check_alive()
            raise BrokerError(
                f"Kafka at {self.bootstrap_servers} answered but could not complete a "
                f"transaction: {exc}. Broker log tail:\n{_log_tail(self.log_path)}") from exc

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BrokerError(
                f"Kafka exited with code {self.process.returncode} during start-up; the log "
                f"below says why (a clashing port or a data dir from another cluster are usual; "
                f"remove {self.data_dir} if it is stale). "
                f"Broker log tail ({self.log_path}):\n{_log_tail(self.log_path)}")

    def _controller_port(self, props: Path) -> int:
        """The controller port of the previous start on this data dir, else a fresh one.

        Why: KRaft's quorum is addressed by `controller.quorum.voters`; keeping it identical
        across restarts keeps the voter set exactly what the stored metadata was written with.
        A stored port something else now listens on is given up for a fresh one (a lone
        static voter also comes back on a new port).
        """
        _, stored = _stored_ports(props)
        if stored is not None and stored != self.port and not _port_taken(stored):
            return stored
        return free_port()

    def stop(self, timeout: float = 20.0, keep_data: bool = False) -> None:
        """Graceful stop: SIGTERM, wait up to `timeout` (then SIGKILL).

        A data dir this object created itself is deleted unless `keep_data`; a caller's data
        dir is always kept. Either way `start()` may be called again on the same object.
        """
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._owns_data_dir and self.data_dir is not None and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self, timeout: float = 20.0) -> None:
        """Crash the broker: SIGKILL the JVM and reap it. The data dir is always kept.

        Why: crash tests need an unclean shutdown (no log flush, no controlled shutdown) that
        `start()` on the same object can recover from at once.
        """
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes, base64url without padding (22 chars).

    Like Kafka's own Uuid.randomUuid(), never one starting with '-' (command-line parsers read
    it as an option) nor the reserved all-zero / ...01 UUIDs.
    """
    while True:
        raw = uuid.uuid4().bytes
        cluster_id = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not cluster_id.startswith("-") and int.from_bytes(raw, "big") > 1:
            return cluster_id


def _format_storage(jvm: list[str], props: Path, cluster_id: str) -> None:
    """Format KRaft storage for `props` with `cluster_id` (`--cluster-id=ID`: a value, always)."""
    data_dir = props.parent
    try:
        fmt = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
             "-c", str(props), "--ignore-formatted"],
            capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(
            f"Formatting KRaft storage in {data_dir} took over 120s: check the "
            "machine's load and free memory, then retry.") from exc
    if fmt.returncode != 0:
        raise BrokerError(
            f"Formatting KRaft storage in {data_dir} failed (exit {fmt.returncode});"
            " check the JVM options (heap) and that the directory is writable:\n"
            + fmt.stdout + fmt.stderr)


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def check_transactions(bootstrap: str, timeout: float = 60.0,
                       alive: Callable[[], None] | None = None) -> None:
    """Prove the cluster is usable for kstream: metadata answers and a transaction commits.

    `alive` is called between attempts (each at most a few seconds) and may raise to give up
    early, e.g. when the broker process being waited for has exited.
    """
    from confluent_kafka import KafkaError, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    deadline = time.monotonic() + timeout
    # _UNSUPPORTED_FEATURE: a broker that has just opened its port can answer before its
    # API versions are settled (seen under heavy load: "Failed to get metadata: Required
    # feature not supported"); it is ready moments later, so retry until the deadline.
    unreachable = (KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                   KafkaError._UNSUPPORTED_FEATURE)

    def attempt_timeout() -> float:
        return max(1.0, min(5.0, deadline - time.monotonic()))

    def retrying(op: Callable[[], T]) -> T:
        while True:
            try:
                return op()
            except KafkaException as exc:
                err = exc.args[0]
                if time.monotonic() > deadline or not (
                        err.retriable() or err.code() in unreachable):
                    raise
            if alive is not None:
                alive()
            time.sleep(0.2)

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    topic = "__kstream_ready"
    topics = retrying(lambda: admin.list_topics(timeout=attempt_timeout())).topics
    if topic not in topics:
        fut = admin.create_topics([NewTopic(topic, 1, 1)])[topic]
        with contextlib.suppress(KafkaException):  # created concurrently is fine
            fut.result(timeout=max(1.0, deadline - time.monotonic()))
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3,
                         "transactional.id": f"kstream-ready-{uuid.uuid4()}"})
    retrying(lambda: producer.init_transactions(attempt_timeout()))
    producer.begin_transaction()
    producer.produce(topic, b"ready")
    retrying(lambda: producer.commit_transaction(attempt_timeout()))


# ---------------------------------------------------------------- the background broker (CLI)


def _state_file() -> Path:
    return cache_root() / "broker.json"


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): kill(0) is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _is_broker(pid: int) -> bool:
    """Guard against a recycled pid: on Linux, check the process is a Kafka JVM."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"kafka.Kafka" in cmdline


def background_status() -> dict[str, object] | None:
    """The running background broker's record, or None when there is none."""
    path = _state_file()
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # unreadable record: nothing we can manage
        return None
    if not (_pid_alive(pid) and _is_broker(pid)):
        path.unlink(missing_ok=True)
        return None
    return info


def start_background(port: int | None = None, data_dir: Path | None = None) -> dict[str, object]:
    """Start a broker that outlives this process; returns its record (bootstrap, pid, log)."""
    running = background_status()
    if running:
        return running
    if data_dir is None:
        # The default is a fresh, empty broker on every start; a caller's data dir is reused.
        data_dir = cache_root() / "broker-data"
        shutil.rmtree(data_dir, ignore_errors=True)
    data_dir = data_dir.resolve()  # the record and log.dirs must not depend on the cwd
    broker = LocalBroker(data_dir=data_dir, port=port)
    broker.start(detach=True)
    assert broker.process is not None
    info: dict[str, object] = {"pid": broker.process.pid, "bootstrap": broker.bootstrap_servers,
                               "data_dir": str(data_dir), "log": str(broker.log_path)}
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(info))
    broker.process = None  # detached: the CLI process must not stop it on exit
    return info


def stop_background(timeout: float = 20.0) -> bool:
    """Stop the background broker (SIGTERM, then SIGKILL after `timeout`); False if none ran."""
    info = background_status()
    if not info:
        return False
    pid = int(str(info["pid"]))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _state_file().unlink(missing_ok=True)
    return True
