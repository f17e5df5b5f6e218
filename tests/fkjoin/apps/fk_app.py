"""A foreign-key join app for broker tests, configured by environment variables.

Orders (FK_APP_ORDERS: string keys, JSON {"n", "c"}) join customers (FK_APP_CUSTOMERS:
string keys, JSON string values) by order["c"]; FK_APP_KIND "inner" or "left"; the result
table's changes ([n, customer], null: deleted) go to FK_APP_OUT. Exactly-once.

Run with `kstream run fk_app:app` from this directory.
"""

from __future__ import annotations

import os
import time
from typing import Any

from kstream import App, StreamBuilder

env = os.environ
THROTTLE_S = float(env.get("FK_APP_THROTTLE_US", "0")) / 1e6


def joined(order: dict[str, Any], customer: Any) -> list[Any]:
    if THROTTLE_S:
        end = time.perf_counter() + THROTTLE_S
        while time.perf_counter() < end:  # bounded busy work: widens the crash windows
            pass
    return [order["n"], customer]


builder = StreamBuilder()
customers = builder.table(env["FK_APP_CUSTOMERS"], "string", "json", name="customers")
orders = builder.table(env["FK_APP_ORDERS"], "string", "json", name="orders")
join = orders.left_join if env.get("FK_APP_KIND", "inner") == "left" else orders.join
(join(customers, lambda order: order["c"], joined, name="order-customer")
 .to_stream().to(env["FK_APP_OUT"], "string", "json"))

app = App(
    builder,
    application_id=env["FK_APP_ID"],
    bootstrap_servers=env["FK_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=env["FK_APP_STATE_DIR"],
    batch_size=500,
    session_timeout_ms=6000,
    transaction_timeout_ms=5000,
    commit_interval_ms=100,
)
