"""App: a topology plus its configuration, run as one consumer-group instance."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from kstream.config import AppConfig
from kstream.dsl.stream import StreamBuilder
from kstream.runtime.engine import Engine
from kstream.topology import Topology

log = logging.getLogger("kstream.app")


class App:
    """`App(topology, application_id=..., bootstrap_servers=..., **settings).run()`.

    Settings are validated here, at construction, so a typo fails before anything connects.
    """

    def __init__(self, topology: Topology | StreamBuilder, **settings: Any) -> None:
        self.topology = topology.build() if isinstance(topology, StreamBuilder) else topology
        self.topology.subtopologies()  # validates the graph now
        self.config = AppConfig.from_kwargs(**settings)
        self._settings = settings
        self._engine: Engine | None = None

    def with_config(self, **changes: Any) -> App:
        """A copy of this app with some settings replaced (e.g. from the command line)."""
        return App(self.topology, **{**self._settings, **changes})

    def run(self, install_signal_handlers: bool = True) -> None:
        """Block until stopped (SIGTERM/SIGINT: finish the batch, commit, leave the group)."""
        self._engine = engine = Engine(self.topology, self.config)
        if self.config.metrics_port is not None:
            self._serve_metrics(self.config.metrics_port)
        owns_process = (install_signal_handlers
                        and threading.current_thread() is threading.main_thread())
        if owns_process:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: engine.request_stop())
        # Owning the process, a stop that overruns shutdown_timeout_ms ends it (exit 3).
        engine.run(hard_exit_on_shutdown_timeout=owns_process)

    def _serve_metrics(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        from kstream.metrics import EngineCollector

        registry = CollectorRegistry()
        registry.register(EngineCollector(self.config.application_id, lambda: self.stats))
        start_http_server(port, registry=registry)
        log.info("event=metrics port=%d", port)

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.request_stop()

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this instance (records in/out, commits, aborts, lag, late records…)."""
        if self._engine is None:
            return {}
        snapshot = self._engine.stats.snapshot()
        snapshot["late_records"] += sum(t.dropped_late for t in list(self._engine.tasks.values()))
        return snapshot
