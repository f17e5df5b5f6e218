"""The reference word count, configured by environment variables, for the operations tests
(interactive queries, reset, metrics, status page). Run: kstream run ops_wordcount:app."""

from __future__ import annotations

import os

from kstream import EXACTLY_ONCE, App
from topologies.wordcount import build

_port = os.environ.get("OPS_QUERY_PORT")

app = App(
    build(os.environ.get("OPS_INPUT", "ops-lines"), os.environ.get("OPS_OUTPUT", "ops-counts")),
    application_id=os.environ.get("OPS_APP_ID", "ops-wordcount"),
    bootstrap_servers=os.environ.get("OPS_BOOTSTRAP", "127.0.0.1:9092"),
    processing_guarantee=EXACTLY_ONCE,
    state_dir=os.environ.get("OPS_STATE_DIR", "/tmp/kstream-ops"),
    query_port=int(_port) if _port else None,
    application_server=f"127.0.0.1:{_port}" if _port else None,
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    # Lag (and the status page) from librdkafka statistics every second instead of every 10 s.
    consumer_config={"statistics.interval.ms": 1000},
)
