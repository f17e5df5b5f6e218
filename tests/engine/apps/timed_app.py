"""A counting app whose outputs carry when they were processed, for availability tests.

Input keyed by account; each record updates the account's {"n": count, "at": wall-clock
seconds when processed}. No repartition: output partition = input partition (same key, same
partition count), so the output shows when each input partition was being processed.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kstream import App, StreamBuilder


def update(_key: str, _value: Any, agg: dict[str, float]) -> dict[str, float]:
    return {"n": agg["n"] + 1, "at": time.time()}


builder = StreamBuilder()
(builder.stream(os.environ["TIMED_APP_INPUT"], "string", "json")
 .group_by_key()
 .aggregate(lambda: {"n": 0, "at": 0.0}, update, "counts")
 .to_stream()
 .to(os.environ["TIMED_APP_OUTPUT"], "string", "json"))

app = App(
    builder,
    application_id=os.environ["TIMED_APP_ID"],
    bootstrap_servers=os.environ["TIMED_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=os.environ["TIMED_APP_STATE_DIR"],
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    batch_size=200,
)
