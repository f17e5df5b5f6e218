"""Application configuration: one frozen, validated object, built from kwargs and environment."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kstream.errors import ConfigError  # defined with the other errors; importable from here
from serdes import resolve

AT_MOST_ONCE = "at_most_once"
AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
GUARANTEES = (AT_MOST_ONCE, AT_LEAST_ONCE, EXACTLY_ONCE)

ERROR_FAIL = "fail"
ERROR_DEAD_LETTER = "dead_letter"
ERROR_POLICIES = (ERROR_FAIL, ERROR_DEAD_LETTER)

# Settings kstream owns; passing them through would break its guarantees.
# partition.assignment.strategy: "range" keeps partition N of co-partitioned topics together;
# group.protocol: the KIP-848 protocol has no client-side range assignor; group.instance.id:
# static membership must be stable per instance (the state dir's identity), not per config.
_RESERVED_CONSUMER = {"enable.auto.commit", "enable.auto.offset.store", "isolation.level",
                      "group.id", "bootstrap.servers", "partition.assignment.strategy",
                      "group.protocol", "group.instance.id"}
_RESERVED_PRODUCER = {"transactional.id", "enable.idempotence", "bootstrap.servers"}
_INT_FIELDS = ("commit_interval_ms", "batch_size", "poll_timeout_ms", "transaction_timeout_ms",
               "session_timeout_ms", "topic_partitions", "shutdown_timeout_ms",
               "restore_timeout_ms", "watchdog_timeout_ms", "startup_timeout_ms", "metrics_port",
               "query_port", "max_task_idle_ms", "buffered_records_per_partition",
               "num_standby_replicas")
_APP_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class AppConfig:
    """Everything an App needs to run. Environment variables `KSTREAM_<FIELD>` fill unset fields."""

    application_id: str
    bootstrap_servers: str
    processing_guarantee: str = AT_LEAST_ONCE
    commit_interval_ms: int | None = None  # default: 100 under exactly-once, else 1000
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get(
        "KSTREAM_STATE_DIR", Path.home() / ".local" / "state" / "kstream")))
    error_policy: str = ERROR_FAIL
    batch_size: int = 1000
    poll_timeout_ms: int = 100
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    auto_offset_reset: str = "earliest"
    auto_create_topics: bool = False
    topic_partitions: int = 1
    shutdown_timeout_ms: int = 30_000
    restore_timeout_ms: int = 600_000
    # A loop that has not come back to poll() for this long gets its stack logged (keep it
    # below max.poll.interval.ms, 300 s by default, so the dump comes before the expulsion).
    watchdog_timeout_ms: int = 60_000
    # How long a starting instance tries to reach bootstrap_servers before it gives up with a
    # clear error. Only start-up: a running instance waits out outages of any length.
    startup_timeout_ms: int = 10_000
    metrics_port: int | None = None  # serve Prometheus metrics on this port when set
    # Interactive queries (see kstream.queries, kstream.server): "host:port" other instances
    # and clients reach this instance's query server at; advertised in the consumer's
    # client.id. Default with query_port: "<hostname>:<query_port>".
    application_server: str | None = None
    query_port: int | None = None  # serve the HTTP query server and status page on this port
    # Run stateless chains as generated functions (same results, fewer calls per record);
    # False runs each operator's process(), to rule fusion out when debugging.
    fusion: bool = True
    # Tasks reading several partitions (joins, merges) take records lowest timestamp first
    # (kstream.runtime.ordering), as Kafka Streams does; False processes them in consumption
    # order (then a join's grace must cover how far one input's fetches run ahead).
    timestamp_ordering: bool = True
    # With timestamp_ordering: when one partition has nothing fetched and is at its end,
    # wait this long for it before going on (Kafka Streams' max.task.idle.ms; -1: never wait).
    max_task_idle_ms: int = 0
    # Held records per partition of such a task before its fetching pauses (memory bound).
    buffered_records_per_partition: int = 10_000
    # Serdes where none was given (Kafka Streams' default.key.serde / default.value.serde): a
    # serde, serde class or name ("string", "json", ...). None keeps each place's own fallback:
    # raw bytes for topics you name, JSON for internal topics and stores (docs/serdes.md).
    default_key_serde: Any = None
    default_value_serde: Any = None
    # The state dir's identity becomes the consumer's group.instance.id (KIP-345 static
    # membership): a restart within session_timeout_ms gets its partitions back with no
    # rebalance, and keeps using its local stores (kstream.runtime.membership).
    static_membership: bool = True
    # With static membership, whether a clean stop (SIGTERM, App.stop()) also removes the
    # instance from the group at once (an instance scaled in for good). Off: the group keeps
    # its partitions for session_timeout_ms, waiting for it to come back.
    leave_group_on_shutdown: bool = False
    # Warm copies of other instances' stores kept here (kstream.runtime.standby).
    num_standby_replicas: int = 0
    consumer_config: dict[str, Any] = field(default_factory=dict)
    producer_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.application_id or not _APP_ID.match(self.application_id):
            raise ConfigError(
                f"application_id {self.application_id!r} must be 1-200 characters of "
                "letters, digits, '.', '_' or '-' (it names the group and internal topics)")
        if not self.bootstrap_servers:
            raise ConfigError("bootstrap_servers is required (or set KSTREAM_BOOTSTRAP_SERVERS)")
        if self.processing_guarantee not in GUARANTEES:
            raise ConfigError(f"processing_guarantee {self.processing_guarantee!r} must be one "
                              f"of {', '.join(GUARANTEES)}")
        if self.error_policy not in ERROR_POLICIES:
            raise ConfigError(f"error_policy {self.error_policy!r} must be one of "
                              f"{', '.join(ERROR_POLICIES)}")
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be an integer, got {value!r} "
                                  f"({type(value).__name__})")
        for name in ("batch_size", "poll_timeout_ms", "transaction_timeout_ms",
                     "session_timeout_ms", "topic_partitions", "shutdown_timeout_ms",
                     "restore_timeout_ms", "watchdog_timeout_ms", "startup_timeout_ms"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_task_idle_ms < -1:
            raise ConfigError("max_task_idle_ms must be >= -1 (-1: never wait)")
        if self.num_standby_replicas < 0:
            raise ConfigError("num_standby_replicas must be >= 0")
        if self.buffered_records_per_partition < 2:
            raise ConfigError("buffered_records_per_partition must be at least 2")
        if self.commit_interval_ms is not None and self.commit_interval_ms < 0:
            raise ConfigError("commit_interval_ms must be >= 0")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigError("auto_offset_reset must be 'earliest' or 'latest'")
        for key in self.consumer_config:
            if key in _RESERVED_CONSUMER:
                raise ConfigError(f"consumer_config may not set {key!r}: kstream manages it")
        for key in self.producer_config:
            if key in _RESERVED_PRODUCER:
                raise ConfigError(f"producer_config may not set {key!r}: kstream manages it")
        acks = str(self.producer_config.get("acks", self.producer_config.get(
            "request.required.acks", "all"))).lower()
        if self.processing_guarantee != AT_MOST_ONCE and acks not in ("all", "-1"):
            raise ConfigError(f"producer_config acks={acks!r} can lose acknowledged records; "
                              f"{self.processing_guarantee} needs acks=all (the default)")
        for name in ("metrics_port", "query_port"):
            port = getattr(self, name)
            if port is not None and not 0 < int(port) < 65536:
                raise ConfigError(f"{name} must be a TCP port (1-65535), got {port!r}")
        if self.application_server is not None:
            host, sep, port_text = self.application_server.rpartition(":")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"application_server {self.application_server!r} must be "
                                  "'host:port' (where other instances reach this one)")
        for name in ("default_key_serde", "default_value_serde"):
            spec = getattr(self, name)
            if spec is not None:
                try:
                    resolve(spec)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{name}: {exc}") from None
        object.__setattr__(self, "state_dir", Path(self.state_dir))

    @property
    def exactly_once(self) -> bool:
        """Whether processing_guarantee is exactly_once."""
        return self.processing_guarantee == EXACTLY_ONCE

    @property
    def effective_commit_interval_ms(self) -> int:
        """commit_interval_ms, or its default: 100 under exactly-once, else 1000."""
        if self.commit_interval_ms is not None:
            return self.commit_interval_ms
        return 100 if self.exactly_once else 1000

    @property
    def advertised_server(self) -> str | None:
        """The query endpoint this instance advertises: application_server, else
        "<hostname>:<query_port>" when the query server runs, else None."""
        if self.application_server is not None:
            return self.application_server
        if self.query_port is not None:
            return f"{socket.gethostname()}:{self.query_port}"
        return None

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic: `<application_id>-dlq`."""
        return f"{self.application_id}-dlq"

    def replace(self, **changes: Any) -> AppConfig:
        """A copy with some fields changed, validated again (the config is frozen)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> AppConfig:
        """Build from keyword arguments; `KSTREAM_<NAME>` environment variables fill the rest.

        Unknown keyword names are an error (a typo must not silently fall back to a default).
        """
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(names))}")
        values = dict(kwargs)
        for name, f in names.items():
            env = os.environ.get(f"KSTREAM_{name.upper()}")
            if name not in values and env is not None and f.type in (
                    "str", "int", "bool", "int | None", "str | None", "Any"):
                values[name] = _parse_env(env, str(f.type), name)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


def _parse_env(raw: str, typ: str, name: str) -> Any:
    try:
        if typ.startswith("int"):
            return int(raw)
        if typ == "bool":
            return raw.lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise ConfigError(f"KSTREAM_{name.upper()}={raw!r} is not a valid {typ}") from None
    return raw
