"""Engine meters beyond the plain counters of EngineStats: per-partition counts, latency
histograms, restore progress and dropped records by reason.

The hot path pays per batch and per run of one partition, never per record: the engine's
loop already finds the runs of one partition in a batch (to look its task up once), and tells
`run_boundary` about each; a batch's latency and end-to-end latency are observed once per batch.
Everything is plain integers and floats written by the engine thread and read by scrapes from
other threads; a scrape may see a batch half counted, never a torn number (the GIL).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

# Seconds. Batches and commits take milliseconds to seconds; end-to-end latency spans from
# milliseconds (live traffic) to hours (a backlog being caught up).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0, 3600.0)


class Histogram:
    """Fixed-bucket histogram (Prometheus semantics: `le` upper bounds, +Inf last)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], int, float]:
        """(cumulative (le, count) pairs ending with +Inf, count, sum), self-consistent."""
        counts = list(self.counts)
        cumulative, running = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        return cumulative, running, self.sum


@dataclass
class PartitionCounts:
    """One input partition: records consumed, records produced while processing them, lag."""

    records_in: int = 0
    records_out: int = 0
    lag: int | None = None  # from librdkafka's statistics; None until first reported


@dataclass
class RestoreProgress:
    """The latest restore of one changelog partition into one store (offsets of the
    changelog: `position` moves up to `end`)."""

    store: str
    topic: str
    partition: int
    position: int
    end: int
    records: int  # applied so far

    @property
    def remaining(self) -> int:
        return max(self.end - self.position, 0)


@dataclass
class EngineMeters:
    """What `kstream.metrics` and the status page read besides EngineStats."""

    partitions: dict[tuple[str, int], PartitionCounts] = field(default_factory=dict)
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    e2e_seconds: Histogram = field(default_factory=lambda: Histogram(E2E_BUCKETS))
    bad_records: dict[str, int] = field(default_factory=dict)  # by RecordError stage
    restores: dict[tuple[str, int], RestoreProgress] = field(default_factory=dict)
    restoring: bool = False
    # (store, partition) -> changelog records a standby replica here is behind (refreshed
    # every second by the engine; kstream.runtime.standby).
    standby_lag: dict[tuple[str, int], int] = field(default_factory=dict)
    # The run of one partition being processed: (topic, partition), first index, records_out
    # when it began.
    _run: tuple[str, int] | None = None
    _run_start: int = 0
    _run_out: int = 0
    _batch_began: float = 0.0

    # -- the engine loop -----------------------------------------------------------------------
    def batch_started(self, records_out: int) -> None:
        self._run = None
        self._run_start = 0
        self._run_out = records_out
        self._batch_began = time.perf_counter()

    def run_boundary(self, topic: str | None, partition: int | None, index: int,
                     records_out: int) -> None:
        """A run of `topic[partition]` records starts at `index` of the batch."""
        self._close_run(index, records_out)
        self._run = (topic or "", partition or 0)
        self._run_start = index
        self._run_out = records_out

    def batch_done(self, size: int, records_out: int, last_output_ts: int | None) -> None:
        """After a batch of `size` records: the last run, the batch's latency, and the end-to-
        end latency of its last output record (now - its timestamp), once per batch."""
        produced = records_out - self._run_out
        self._close_run(size, records_out)
        self._run = None
        self.batch_seconds.observe(time.perf_counter() - self._batch_began)
        if produced > 0 and last_output_ts is not None and last_output_ts > 0:
            self.e2e_seconds.observe(max(time.time() - last_output_ts / 1000, 0.0))

    def _close_run(self, index: int, records_out: int) -> None:
        run = self._run
        if run is None:
            return
        counts = self.partitions.get(run)
        if counts is None:
            counts = self.partitions[run] = PartitionCounts()
        counts.records_in += max(index - self._run_start, 0)
        counts.records_out += records_out - self._run_out

    def bad_record(self, stage: str) -> None:
        self.bad_records[stage] = self.bad_records.get(stage, 0) + 1

    # -- librdkafka statistics -----------------------------------------------------------------
    def lag_from_statistics(self, stats: dict[str, Any], read_committed: bool) -> int:
        """Per-partition consumer lag from a librdkafka statistics payload (parsed); returns
        the total. Lag is the end of the partition (the last stable offset under
        read_committed, else the high watermark) minus the consumer's position (the offset
        after the last record handed to the app: `app_offset`, past transaction markers).
        librdkafka's own `consumer_lag` counts from the committed offset, which a consumer
        whose offsets are committed through the producer's transaction never learns."""
        total = 0
        end_key = "ls_offset" if read_committed else "hi_offset"
        for topic, tstats in stats.get("topics", {}).items():
            for pid, pstats in tstats.get("partitions", {}).items():
                if pid == "-1" or pstats.get("fetch_state") in ("none", "stopping", "stopped"):
                    continue
                end = pstats.get(end_key, -1)
                position = pstats.get("app_offset", -1)
                if not isinstance(position, int) or position < 0:
                    position = pstats.get("next_offset", -1)
                if not isinstance(end, int) or not isinstance(position, int) or min(
                        end, position) < 0:
                    continue
                lag = max(end - position, 0)
                key = (topic, int(pid))
                counts = self.partitions.get(key)
                if counts is None:
                    counts = self.partitions[key] = PartitionCounts()
                counts.lag = lag
                total += lag
        return total

    # -- restore -------------------------------------------------------------------------------
    def restore_progress(self, progress: list[Any]) -> None:
        """`on_progress` of kstream.state.restore_stores: StoreRestore reports whose
        start_offset is the position reached."""
        self.restoring = True
        for report in progress:
            self.restores[(report.store, report.partition)] = RestoreProgress(
                report.store, report.topic, report.partition, report.start_offset,
                report.end_offset, report.records)

    def restore_finished(self) -> None:
        self.restoring = False
