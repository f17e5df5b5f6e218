"""Prometheus metrics: read from the engine's plain counters and meters at scrape time.

Why a collector and not prometheus Counters: the engine counts per batch in plain integers
(no locks on the hot path); a scrape reads them. Every metric carries `application_id`; the
README's "Operating" section has the table of all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from kstream.runtime.meters import EngineMeters, Histogram
from kstream.runtime.task import SKIP_REASONS

_COUNTERS = {
    "records_in": "Records consumed from input topics",
    "records_out": "Records produced to output topics",
    "commits": "Commits (transactions under exactly-once)",
    "aborts": "Aborted transactions",
    "rebalances": "Partition assignments received",
    "dead_lettered": "Records sent to the dead-letter topic",
    "errors": "Records that failed to deserialize or process",
    "restored": "Records replayed from changelogs into local stores",
    "global_restored": "Records global-table bootstraps read from their topics (in restored)",
    "global_updates": "Records applied to global tables after their bootstrap",
    "late_records": "Records too late for their window, dropped",
    "recoveries": "Aborts and rewinds after Kafka errors (broker outages, abortable states)",
}

# RecordError stages as `reason` labels of kstream_dropped_records_total.
_STAGE_REASONS = {"deserialize": "deserialization", "timestamp": "timestamp",
                  "process": "processing"}

Metric = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class MetricsSource(Protocol):
    """What the collector reads (the App provides it)."""

    def stats(self) -> dict[str, int]: ...

    def meters(self) -> EngineMeters | None: ...

    def assigned_partitions(self) -> list[tuple[str, int]]: ...

    def store_sizes(self) -> dict[tuple[str, int], int]: ...


class _StatsOnly:
    def __init__(self, snapshot: Callable[[], dict[str, int]]) -> None:
        self._snapshot = snapshot

    def stats(self) -> dict[str, int]:
        return self._snapshot()

    def meters(self) -> EngineMeters | None:
        return None

    def assigned_partitions(self) -> list[tuple[str, int]]:
        return []

    def store_sizes(self) -> dict[tuple[str, int], int]:
        return {}


class EngineCollector(Collector):
    """Exposes one app instance's metrics, labelled with its application id.

    `source` is a MetricsSource, or (the older form) a callable returning the stats dict.
    """

    def __init__(self, application_id: str,
                 source: MetricsSource | Callable[[], dict[str, int]]) -> None:
        self._application_id = application_id
        self._source: MetricsSource = _StatsOnly(source) if callable(source) else source

    def collect(self) -> Iterator[Metric]:
        app = self._application_id
        values = self._source.stats()
        for name, help_text in _COUNTERS.items():
            family = CounterMetricFamily(f"kstream_{name}", help_text,
                                         labels=["application_id"])
            family.add_metric([app], values.get(name, 0))
            yield family
        lag = GaugeMetricFamily("kstream_consumer_lag", "Records behind the end of the inputs",
                                labels=["application_id"])
        lag.add_metric([app], values.get("lag", 0))
        yield lag
        ready = GaugeMetricFamily("kstream_ready",
                                  "1 when the instance can reach Kafka, 0 while it waits out an "
                                  "outage", labels=["application_id"])
        ready.add_metric([app], values.get("ready", 1))
        yield ready
        meters = self._source.meters()
        if meters is not None:
            yield from self._partition_metrics(meters)
            yield from self._histograms(meters)
            yield from self._restore_metrics(meters)
            yield self._dropped(meters, values)
        sizes = GaugeMetricFamily("kstream_store_approximate_entries",
                                  "Entries in a store's partition owned here (committed state; "
                                  "RocksDB's estimate)",
                                  labels=["application_id", "store", "partition"])
        for (store, partition), count in sorted(self._source.store_sizes().items()):
            sizes.add_metric([app, store, str(partition)], count)
        yield sizes

    def _partition_metrics(self, meters: EngineMeters) -> Iterator[Metric]:
        app = self._application_id
        labels = ["application_id", "topic", "partition"]
        rin = CounterMetricFamily("kstream_partition_records_in",
                                  "Records consumed from an input partition", labels=labels)
        rout = CounterMetricFamily("kstream_partition_records_out",
                                   "Records produced while processing an input partition's "
                                   "records (its task's outputs)", labels=labels)
        lag = GaugeMetricFamily("kstream_partition_consumer_lag",
                                "Records between the committed position and the end (LSO "
                                "under exactly-once) of an assigned input partition; from "
                                "librdkafka's statistics (statistics.interval.ms)",
                                labels=labels)
        assigned = set(self._source.assigned_partitions())
        for (topic, partition), counts in sorted(dict(meters.partitions).items()):
            key = [app, topic, str(partition)]
            rin.add_metric(key, counts.records_in)
            rout.add_metric(key, counts.records_out)
            if counts.lag is not None and (topic, partition) in assigned:
                lag.add_metric(key, counts.lag)
        yield rin
        yield rout
        yield lag

    def _histograms(self, meters: EngineMeters) -> Iterator[Metric]:
        for name, help_text, hist in (
                ("kstream_batch_process_seconds",
                 "Time to process one consumed batch (all its records, all tasks)",
                 meters.batch_seconds),
                ("kstream_commit_seconds",
                 "Time of one commit (the transaction under exactly-once), stores included",
                 meters.commit_seconds),
                ("kstream_end_to_end_latency_seconds",
                 "Wall-clock time minus the record timestamp of the last output record of "
                 "each batch, when it is produced", meters.e2e_seconds)):
            yield _histogram(name, help_text, hist, self._application_id)

    def _restore_metrics(self, meters: EngineMeters) -> Iterator[Metric]:
        app = self._application_id
        restoring = GaugeMetricFamily("kstream_restoring",
                                      "1 while the instance restores stores from changelogs",
                                      labels=["application_id"])
        restoring.add_metric([app], 1 if meters.restoring else 0)
        yield restoring
        labels = ["application_id", "store", "partition"]
        remaining = GaugeMetricFamily("kstream_restore_remaining_offsets",
                                      "Changelog offsets still to restore (0 once restored); "
                                      "the latest restore of each store partition",
                                      labels=labels)
        done = GaugeMetricFamily("kstream_restore_records",
                                 "Records applied by the latest restore of a store partition",
                                 labels=labels)
        for (store, partition), progress in sorted(dict(meters.restores).items()):
            key = [app, store, str(partition)]
            remaining.add_metric(key, progress.remaining)
            done.add_metric(key, progress.records)
        yield remaining
        yield done
        standby = GaugeMetricFamily("kstream_standby_lag_records",
                                    "Changelog records a standby replica kept here is behind "
                                    "(num_standby_replicas)", labels=labels)
        for (store, partition), lag in sorted(dict(meters.standby_lag).items()):
            standby.add_metric([app, store, str(partition)], lag)
        yield standby

    def _dropped(self, meters: EngineMeters, values: dict[str, int]) -> Metric:
        family = CounterMetricFamily(
            "kstream_dropped_records",
            "Records that did not go through the topology, by reason: late (outside every "
            "window's grace), null_key / null_value (skipped by an aggregation or join), "
            "deserialization, timestamp or processing errors (dead-lettered or stopping the "
            "app, per error_policy)",
            labels=["application_id", "reason"])
        family.add_metric([self._application_id, "late"], values.get("late_records", 0))
        for reason in SKIP_REASONS:
            family.add_metric([self._application_id, reason], values.get(f"skipped_{reason}", 0))
        bad = dict(meters.bad_records)
        for stage, reason in _STAGE_REASONS.items():
            family.add_metric([self._application_id, reason], bad.get(stage, 0))
        return family


def _histogram(name: str, help_text: str, hist: Histogram, app: str) -> HistogramMetricFamily:
    buckets, _count, total = hist.snapshot()
    family = HistogramMetricFamily(name, help_text, labels=["application_id"])
    family.add_metric([app], [(le, float(n)) for le, n in buckets], total)
    return family
