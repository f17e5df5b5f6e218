"""A stateless app for crash tests, configured by environment variables.

Run with `kstream run crash_app:app` from this directory. Each input {"id": i} yields
`i % 3 + 1` outputs "i:j" (flat_map), except ids divisible by 7 (filtered), so loss and
duplication are both visible in the output.
"""

from __future__ import annotations

import os
import time

from kstream import App, StreamBuilder
from serdes import JsonSerde, StringSerde

THROTTLE_S = float(os.environ.get("CRASH_APP_THROTTLE_US", "0")) / 1e6


def expand(value: dict[str, int]) -> list[str]:
    if THROTTLE_S:
        end = time.perf_counter() + THROTTLE_S
        while time.perf_counter() < end:  # bounded busy work: simulates per-record cost
            pass
    i = value["id"]
    return [f"{i}:{j}" for j in range(i % 3 + 1)]


def poison_check(value: dict[str, int]) -> dict[str, int]:
    if value.get("poison"):
        raise ValueError(f"poison record {value['id']}")
    return value


builder = StreamBuilder()
(
    builder.stream(os.environ["CRASH_APP_INPUT"], key_serde=StringSerde(), value_serde=JsonSerde())
    .filter_not(lambda _k, v: v["id"] % 7 == 0)
    .map_values(poison_check)
    .flat_map_values(expand)
    .to(os.environ["CRASH_APP_OUTPUT"], value_serde=StringSerde())
)

app = App(
    builder,
    application_id=os.environ["CRASH_APP_ID"],
    bootstrap_servers=os.environ["CRASH_APP_BOOTSTRAP"],
    processing_guarantee=os.environ["CRASH_APP_GUARANTEE"],
    state_dir=os.environ["CRASH_APP_STATE_DIR"],
    error_policy=os.environ.get("CRASH_APP_ERROR_POLICY", "fail"),
    batch_size=int(os.environ.get("CRASH_APP_BATCH", "200")),
    session_timeout_ms=int(os.environ.get("CRASH_APP_SESSION_MS", "6000")),
    transaction_timeout_ms=int(os.environ.get("CRASH_APP_TXN_MS", "5000")),
    commit_interval_ms=int(os.environ.get("CRASH_APP_COMMIT_MS", "100")),
)
