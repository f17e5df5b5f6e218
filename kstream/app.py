"""App: a topology plus its configuration, run as one consumer-group instance."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kstream.config import AppConfig
from kstream.dsl.stream import StreamBuilder
from kstream.errors import StoreNotAvailableError
from kstream.hosts import GroupMembership, InstanceMetadata, KeyMetadata
from kstream.queries import (
    RESTORING,
    RUNNING,
    KeyValueView,
    QueryableTasks,
    SessionView,
    WindowView,
    view_for,
)
from kstream.runtime.engine import Engine
from kstream.runtime.lifecycle import EngineState
from kstream.topology import Topology

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from kstream.runtime.meters import EngineMeters

log = logging.getLogger("kstream.app")


class App:
    """`App(topology, application_id=..., bootstrap_servers=..., **settings).run()`.

    Settings are validated here, at construction, so a typo fails before anything connects.
    """

    def __init__(self, topology: Topology | StreamBuilder, **settings: Any) -> None:
        self.topology = topology.build() if isinstance(topology, StreamBuilder) else topology
        self.topology.subtopologies()  # validates the graph now
        self.config = AppConfig.from_kwargs(**settings)
        self.topology.serde_defaults.bind(self.config.default_key_serde,
                                          self.config.default_value_serde)
        self._settings = settings
        self._engine: Engine | None = None
        self._membership: GroupMembership | None = None
        self._registry: CollectorRegistry | None = None

    def with_config(self, **changes: Any) -> App:
        """A copy of this app with some settings replaced (e.g. from the command line)."""
        return App(self.topology, **{**self._settings, **changes})

    def run(self, install_signal_handlers: bool = True) -> None:
        """Block until stopped (SIGTERM/SIGINT: finish the batch, commit, close the consumer;
        a static member stays in the group unless `leave_group_on_shutdown`).

        With `metrics_port` a Prometheus endpoint runs meanwhile; with `query_port` the query
        server (interactive queries, /health, /ready, /metrics and the status page; see
        kstream.server)."""
        self._engine = engine = Engine(self.topology, self.config)
        servers: list[Any] = []
        try:
            if self.config.metrics_port is not None:
                servers.append(self._serve_metrics(self.config.metrics_port))
            if self.config.query_port is not None:
                from kstream.server import QueryServer

                servers.append(QueryServer(self, self.config.query_port).start())
            owns_process = (install_signal_handlers
                            and threading.current_thread() is threading.main_thread())
            if owns_process:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: engine.request_stop())
            # Owning the process, a stop that overruns shutdown_timeout_ms ends it (exit 3).
            engine.run(hard_exit_on_shutdown_timeout=owns_process)
        finally:
            for server in servers:
                server.shutdown()  # both are socketserver servers: stop serving, free the port
                server.server_close()

    def _serve_metrics(self, port: int) -> Any:
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, registry=self.metrics_registry())
        log.info("event=metrics port=%d", port)
        return server

    def metrics_registry(self) -> CollectorRegistry:
        """The Prometheus registry of this app's metrics (served on `metrics_port` and on the
        query server's /metrics; every metric is described in the README)."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            from kstream.metrics import EngineCollector

            self._registry = CollectorRegistry()
            self._registry.register(EngineCollector(self.config.application_id,
                                                    _AppMetrics(self)))
        return self._registry

    def savepoint(self, directory: str | Path, make_archive: bool = False, *,
                  stop: bool = False, stop_timeout_s: float = 300.0) -> Path:
        """`app.savepoint(DIR, make_archive=False, stop=False) -> Path`: a savepoint of this
        application's group in the new directory DIR; see kstream.savepoint.create_savepoint.

        Without `stop` the group keeps running and is not paused. With `stop=True` this
        instance, if it runs in this process, is stopped first as SIGTERM would: it finishes
        its batch, commits and leaves the group; then the savepoint waits (up to
        `stop_timeout_s`) until no other instance is left in the group and no transaction is
        open, and reads the stopped state. The app stays stopped: run it (or a restored
        version) again afterwards."""
        from kstream.savepoint import create_savepoint

        if stop:
            self._stop_and_wait(stop_timeout_s)
        return create_savepoint(self, directory, make_archive=make_archive, stop=stop,
                                stop_timeout_s=stop_timeout_s)

    def _stop_and_wait(self, timeout_s: float) -> None:
        """Stop this instance's engine and wait until it has committed and left the group."""
        from kstream.savepoint import SavepointError

        engine = self._engine
        if engine is None:
            return
        deadline = time.monotonic() + timeout_s
        while engine.life.state is not EngineState.STOPPED:
            engine.request_stop(leave_group=True)  # the savepoint waits for an empty group
            if time.monotonic() > deadline:
                raise SavepointError(f"{self.config.application_id} did not stop within "
                                     f"{timeout_s:.0f}s (state {engine.life.state.value})")
            time.sleep(0.05)

    def stop(self, leave_group: bool | None = None) -> None:
        """`app.stop(leave_group=None) -> None`: ask a running `run()` to stop, as SIGTERM does
        (finish the batch, commit, close the consumer); returns at once. Safe from another
        thread; does nothing before `run()`.

        With static membership the group keeps this instance's partitions for
        `session_timeout_ms` so a restart gets them back without a rebalance;
        `leave_group=True` removes it from the group at once (scaling in), `False` keeps it,
        None follows `leave_group_on_shutdown`."""
        if self._engine is not None:
            self._engine.request_stop(leave_group)

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this instance (records in/out, commits, aborts, lag, late records…)."""
        if self._engine is None:
            return {}
        snapshot = self._engine.stats.snapshot()
        tasks = list(self._engine.tasks.values())
        snapshot["late_records"] += sum(t.dropped_late for t in tasks)
        for task in tasks:
            for reason, count in task.skipped.items():
                snapshot[f"skipped_{reason}"] += count
        return snapshot

    # -- interactive queries -------------------------------------------------------------------
    def store(self, name: str) -> KeyValueView | WindowView | SessionView:
        """`app.store(name) -> KeyValueView | WindowView | SessionView`: a read-only view of
        store `name` across the partitions this instance owns (see kstream.queries).

        Reads see committed state only and are safe from any thread while the app runs. A key
        whose partition another instance owns raises NotOwnedHereError (ask
        `metadata_for_key`); during a rebalance or restore, or before `run()` started, reads
        raise StoreNotAvailableError: retry. UnknownStoreError for a name the topology lacks.
        """
        return view_for(name, self.topology, self._queryable)

    def metadata_for_key(self, store: str, key: Any) -> KeyMetadata:
        """`app.metadata_for_key(store, key) -> KeyMetadata(store, partition, endpoint, topic)`:
        which instance owns `key` of `store` (its advertised `application_server`) and the
        partition, from the consumer group's current assignment, so every instance computes
        the same answer. StoreNotAvailableError while the group rebalances (retry)."""
        view = self.store(store)
        tasks = self._queryable()
        partition = view.partition_for_key(key)
        sub = tasks.sub_of_store(store)
        topic, owner = self._group().owner(sub.source_topics, partition, tasks.epoch)
        return KeyMetadata(store, partition, owner.endpoint, topic)

    def all_metadata(self) -> list[InstanceMetadata]:
        """`app.all_metadata() -> list[InstanceMetadata]`: every live instance of this app,
        its advertised endpoint and its assigned partitions (StoreNotAvailableError while
        Kafka does not answer)."""
        tasks = self._engine.queries if self._engine is not None else None
        return list(self._group().describe(tasks.epoch if tasks else 0).instances)

    def readiness(self) -> tuple[bool, list[str]]:
        """`app.readiness() -> (ready, reasons not)`: ready means partitions assigned, their
        stores restored, the engine processing and Kafka reachable (the /ready endpoint)."""
        engine = self._engine
        if engine is None:
            return False, ["not started"]
        reasons = []
        if engine.life.state is not EngineState.RUNNING:
            reasons.append(f"engine {engine.life.state.value}")
        if engine.stats.ready != 1:
            reasons.append("waiting for Kafka")
        queries = engine.queries
        if queries.state == RESTORING:
            reasons.append("restoring state")
        elif queries.state != RUNNING:
            reasons.append(queries.state.replace("_", " "))
        elif not queries.assignment:
            reasons.append("no partitions assigned")
        return not reasons, reasons

    def _queryable(self) -> QueryableTasks:
        if self._engine is None:
            raise StoreNotAvailableError("the app is not running; retry", reason="not_running")
        return self._engine.queries

    def _group(self) -> GroupMembership:
        if self._membership is None:
            cfg = self.config
            admin = {"bootstrap.servers": cfg.bootstrap_servers,
                     **{k: v for k, v in cfg.consumer_config.items()
                        if k.startswith(("security.", "sasl.", "ssl."))}}
            self._membership = GroupMembership(cfg.application_id, admin)
        return self._membership


class _AppMetrics:
    """The App as kstream.metrics reads it (a MetricsSource)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def stats(self) -> dict[str, int]:
        return self._app.stats

    def meters(self) -> EngineMeters | None:
        engine = self._app._engine
        return None if engine is None else engine.meters

    def assigned_partitions(self) -> list[tuple[str, int]]:
        engine = self._app._engine
        if engine is None:
            return []
        queries = engine.queries
        return [(topic, partition) for index, partition in sorted(queries.assignment)
                for topic in queries.subtopologies[index].source_topics]

    def store_sizes(self) -> dict[tuple[str, int], int]:
        sizes: dict[tuple[str, int], int] = {}
        if self._app._engine is None:
            return sizes
        for name in self._app.topology.stores:
            try:
                for partition, count in self._app.store(name).approximate_counts().items():
                    sizes[(name, partition)] = count
            except StoreNotAvailableError:
                continue  # rebalancing or restoring: no figure rather than a wrong one
        return sizes
