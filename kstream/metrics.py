"""Prometheus metrics: read from the engine's plain counters at scrape time.

Why a collector and not prometheus Counters: the engine counts per batch in plain integers
(no locks on the hot path); a scrape reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_COUNTERS = {
    "records_in": "Records consumed from input topics",
    "records_out": "Records produced to output topics",
    "commits": "Commits (transactions under exactly-once)",
    "aborts": "Aborted transactions",
    "rebalances": "Partition assignments received",
    "dead_lettered": "Records sent to the dead-letter topic",
    "errors": "Records that failed to deserialize or process",
    "restored": "Records replayed from changelogs into local stores",
    "late_records": "Records too late for their window, dropped",
    "recoveries": "Aborts and rewinds after Kafka errors (broker outages, abortable states)",
}


class EngineCollector(Collector):
    """Exposes one app instance's counters, labelled with its application id."""

    def __init__(self, application_id: str, snapshot: Callable[[], dict[str, int]]) -> None:
        self._application_id = application_id
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        values = self._snapshot()
        for name, help_text in _COUNTERS.items():
            family = CounterMetricFamily(f"kstream_{name}", help_text,
                                         labels=["application_id"])
            family.add_metric([self._application_id], values.get(name, 0))
            yield family
        lag = GaugeMetricFamily("kstream_consumer_lag", "Records behind the end of the inputs",
                                labels=["application_id"])
        lag.add_metric([self._application_id], values.get("lag", 0))
        yield lag
        ready = GaugeMetricFamily("kstream_ready",
                                  "1 when the instance can reach Kafka, 0 while it waits out an "
                                  "outage", labels=["application_id"])
        ready.add_metric([self._application_id], values.get("ready", 1))
        yield ready
