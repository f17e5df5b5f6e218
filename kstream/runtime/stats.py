"""Engine counters: plain integers bumped per batch, read by logs and the metrics endpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class EngineStats:
    records_in: int = 0
    records_out: int = 0
    commits: int = 0
    aborts: int = 0
    rebalances: int = 0
    dead_lettered: int = 0
    errors: int = 0
    lag: int = 0
    restored: int = 0
    global_restored: int = 0  # of `restored`: records global-table bootstraps read
    global_updates: int = 0  # records applied to global tables after their bootstrap
    late_records: int = 0  # of closed tasks; live tasks add their own
    # Records an operator skipped because they cannot take part (Kafka Streams skips and
    # counts these too): a null key into an aggregation or join, a null value into an
    # aggregation. Of closed tasks; live tasks add their own.
    skipped_null_key: int = 0
    skipped_null_value: int = 0
    recoveries: int = 0  # aborts-and-rewinds after Kafka errors (outages, abortable states)
    ready: int = 1  # 0 while waiting for Kafka (an outage); a gauge, not a counter

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
