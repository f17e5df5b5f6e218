"""An app whose processing blocks on a record with value {"stuck": true}: for shutdown tests.

Configured by environment variables like crash_app.py; short watchdog and shutdown timeouts.
"""

from __future__ import annotations

import os
import threading

from kstream import App, StreamBuilder
from serdes import JsonSerde, StringSerde

NEVER = threading.Event()


def block_when_stuck(value: dict[str, object]) -> dict[str, object]:
    if value.get("stuck"):
        NEVER.wait(600)  # the stuck call the watchdog must report and SIGTERM must outlast
    return value


builder = StreamBuilder()
(builder.stream(os.environ["STUCK_APP_INPUT"], key_serde=StringSerde(), value_serde=JsonSerde())
 .map_values(block_when_stuck)
 .to(os.environ["STUCK_APP_OUTPUT"], key_serde=StringSerde(), value_serde=JsonSerde()))

app = App(
    builder,
    application_id=os.environ["STUCK_APP_ID"],
    bootstrap_servers=os.environ["STUCK_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=os.environ["STUCK_APP_STATE_DIR"],
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    watchdog_timeout_ms=2000,
    shutdown_timeout_ms=4000,
)
