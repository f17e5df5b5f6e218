"""A stateful app for crash tests: re-key by account (repartition), then count and sum.

Input values {"id": i, "account": "a<k>", "amount": n} keyed by id; outputs per account the
running {"count", "sum"} after every update. Configured by environment variables.
"""

from __future__ import annotations

import os
import time

from kstream import App, StreamBuilder
from serdes import JsonSerde, StringSerde

THROTTLE_S = float(os.environ.get("STATEFUL_APP_THROTTLE_US", "0")) / 1e6


def add(_key: str, value: dict[str, int], agg: dict[str, int]) -> dict[str, int]:
    if THROTTLE_S:
        end = time.perf_counter() + THROTTLE_S
        while time.perf_counter() < end:  # bounded busy work: simulates per-record cost
            pass
    return {"count": agg["count"] + 1, "sum": agg["sum"] + value["amount"]}


builder = StreamBuilder()
totals = (builder.stream(os.environ["STATEFUL_APP_INPUT"], key_serde=StringSerde(),
                         value_serde=JsonSerde())
          .group_by(lambda _k, v: v["account"], key_serde=StringSerde())
          .aggregate(lambda: {"count": 0, "sum": 0}, add, "totals",
                     backend=os.environ.get("STATEFUL_APP_BACKEND", "rocksdb")))
totals.to_stream().to(os.environ["STATEFUL_APP_OUTPUT"], key_serde=StringSerde(),
                      value_serde=JsonSerde())

app = App(
    builder,
    application_id=os.environ["STATEFUL_APP_ID"],
    bootstrap_servers=os.environ["STATEFUL_APP_BOOTSTRAP"],
    processing_guarantee=os.environ["STATEFUL_APP_GUARANTEE"],
    state_dir=os.environ["STATEFUL_APP_STATE_DIR"],
    batch_size=int(os.environ.get("STATEFUL_APP_BATCH", "500")),
    session_timeout_ms=int(os.environ.get("STATEFUL_APP_SESSION_MS", "6000")),
    transaction_timeout_ms=5000,
    commit_interval_ms=int(os.environ["STATEFUL_APP_COMMIT_MS"])
    if os.environ.get("STATEFUL_APP_COMMIT_MS") else None,
)
