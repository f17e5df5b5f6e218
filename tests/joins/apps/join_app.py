"""A join app for crash tests, configured by environment variables.

* Stream-stream left join: JOIN_APP_LEFT and JOIN_APP_RIGHT (JSON {"id": n}, event time =
  record time), symmetric window JOIN_APP_WINDOW_MS, grace JOIN_APP_GRACE_MS, results
  [left id, right id or null] to JOIN_APP_STREAM_OUT.
* Table-table outer join: JOIN_APP_TLEFT and JOIN_APP_TRIGHT (string values, null deletes),
  materialized in "tt-joined", changes [left, right] (null: deleted) to JOIN_APP_TABLE_OUT.

Run with `kstream run join_app:app` from this directory.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kstream import App, JoinWindows, StreamBuilder
from serdes import JsonSerde, StringSerde

THROTTLE_S = float(os.environ.get("JOIN_APP_THROTTLE_US", "0")) / 1e6


def throttle(value: Any) -> Any:
    if THROTTLE_S:
        end = time.perf_counter() + THROTTLE_S
        while time.perf_counter() < end:  # bounded busy work: simulates per-record cost
            pass
    return value


def pair(left: Any, right: Any) -> list[Any]:
    return [left, right]


env = os.environ
builder = StreamBuilder()
left = builder.stream(env["JOIN_APP_LEFT"], StringSerde(), JsonSerde()).map_values(throttle)
right = builder.stream(env["JOIN_APP_RIGHT"], StringSerde(), JsonSerde()).map_values(throttle)
windows = JoinWindows.of(int(env["JOIN_APP_WINDOW_MS"]), grace=int(env["JOIN_APP_GRACE_MS"]))
(left.left_join(right, lambda lv, rv: [lv["id"], rv and rv["id"]], windows, "ss")
 .to(env["JOIN_APP_STREAM_OUT"], StringSerde(), JsonSerde()))

tleft = builder.table(env["JOIN_APP_TLEFT"], StringSerde(), StringSerde(), name="tt-left")
tright = builder.table(env["JOIN_APP_TRIGHT"], StringSerde(), StringSerde(), name="tt-right")
(tleft.map_values(throttle).outer_join(tright, pair, "tt", materialized="tt-joined")
 .to_stream().to(env["JOIN_APP_TABLE_OUT"], StringSerde(), JsonSerde()))

app = App(
    builder,
    application_id=env["JOIN_APP_ID"],
    bootstrap_servers=env["JOIN_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=env["JOIN_APP_STATE_DIR"],
    batch_size=200,
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    commit_interval_ms=100,
)
