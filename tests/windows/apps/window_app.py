"""A windowed app for crash tests, configured by environment variables.

Input: JSON {"id": i, "ts": event time}. Per key, 1-second tumbling windows (grace 300 ms)
aggregate [count, sum of ids] twice: emit="final" to WINDOW_APP_FINAL and emit="update" to
WINDOW_APP_UPDATE. Run with `kstream run window_app:app` from this directory.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kstream import App, StreamBuilder
from kstream.windows import TumblingWindows, field_timestamp
from serdes import JsonSerde, StringSerde

THROTTLE_S = float(os.environ.get("WINDOW_APP_THROTTLE_US", "0")) / 1e6


def throttle(value: dict[str, Any]) -> dict[str, Any]:
    if THROTTLE_S:
        end = time.perf_counter() + THROTTLE_S
        while time.perf_counter() < end:  # bounded busy work: simulates per-record cost
            pass
    return value


def add(_key: str, value: dict[str, Any], agg: list[int]) -> list[int]:
    return [agg[0] + 1, agg[1] + value["id"]]


builder = StreamBuilder()
windowed = (
    builder.stream(os.environ["WINDOW_APP_INPUT"], key_serde=StringSerde(),
                   value_serde=JsonSerde(), timestamp_extractor=field_timestamp("ts"))
    .map_values(throttle)
    .group_by_key()
    .windowed_by(TumblingWindows(1000, grace=300))
)
(windowed.aggregate(lambda: [0, 0], add, "final-agg", emit="final")
 .to_stream().to(os.environ["WINDOW_APP_FINAL"], value_serde=JsonSerde()))
(windowed.aggregate(lambda: [0, 0], add, "update-agg")
 .to_stream().to(os.environ["WINDOW_APP_UPDATE"], value_serde=JsonSerde()))

app = App(
    builder,
    application_id=os.environ["WINDOW_APP_ID"],
    bootstrap_servers=os.environ["WINDOW_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=os.environ["WINDOW_APP_STATE_DIR"],
    batch_size=200,
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    commit_interval_ms=100,
)
