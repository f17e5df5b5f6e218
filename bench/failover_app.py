"""The app bench/failover.py runs as OS processes: a per-key aggregate over a big store.

Each input record updates its key's {"n": count, "at": wall-clock seconds when processed}; the
"at" lets the benchmark tell a new owner's first output from records the killed instance
committed just before it died. Configured by FAILOVER_* environment variables (and
KSTREAM_NUM_STANDBY_REPLICAS / KSTREAM_METRICS_PORT, which it does not set).
"""

from __future__ import annotations

import os
import time
from typing import Any

from kstream import App, StreamBuilder


def update(_key: str, _value: Any, agg: dict[str, float]) -> dict[str, float]:
    return {"n": agg["n"] + 1, "at": time.time()}


builder = StreamBuilder()
(builder.stream(os.environ["FAILOVER_INPUT"], "string", "string")
 .group_by_key()
 .aggregate(lambda: {"n": 0, "at": 0.0}, update, "state")
 .to_stream()
 .to(os.environ["FAILOVER_OUTPUT"], "string", "json"))

app = App(
    builder,
    application_id=os.environ["FAILOVER_APP_ID"],
    bootstrap_servers=os.environ["FAILOVER_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=os.environ["FAILOVER_STATE_DIR"],
    session_timeout_ms=int(os.environ["FAILOVER_SESSION_MS"]),
    transaction_timeout_ms=int(os.environ["FAILOVER_TXN_MS"]),
    batch_size=2000,
)
