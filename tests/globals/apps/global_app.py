"""A global-table app for tests on the broker, configured by environment variables.

* GLOBAL_APP_CATALOGUE: the global table "catalogue" (string keys, JSON values).
* GLOBAL_APP_ORDERS -> GLOBAL_APP_OUT: orders (JSON {"id", "sku"}) inner-joined with the
  catalogue by sku: {"id", "sku", "product", "instance"}.
* GLOBAL_APP_PROBES -> GLOBAL_APP_PROBE_OUT: each probe makes a Processor API processor read
  the whole global store by name and emit {"instance", "count", "digest"} (blake2b of the
  sorted entries), so a test can compare what each running instance holds.

Run with `kstream run global_app:app` from this directory.
"""

from __future__ import annotations

import os

from probe_digest import digest

from kstream import App, Processor, ProcessorContext, Record, StreamBuilder
from serdes import JsonSerde, StringSerde

env = os.environ
INSTANCE = env.get("GLOBAL_APP_INSTANCE", "0")


class Probe(Processor):
    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self.catalogue = context.get_store("catalogue")

    def process(self, record: Record) -> None:
        entries = list(self.catalogue.all())
        self.context.forward(Record(record.key, {"instance": INSTANCE, "count": len(entries),
                                                 "digest": digest(entries)}, record.timestamp))


builder = StreamBuilder()
catalogue = builder.global_table(env["GLOBAL_APP_CATALOGUE"], StringSerde(), JsonSerde(),
                                 name="catalogue", backend=env.get("GLOBAL_APP_BACKEND", "rocksdb"))
(builder.stream(env["GLOBAL_APP_ORDERS"], StringSerde(), JsonSerde())
 .join(catalogue, lambda _id, order: order["sku"],
       lambda order, product: {**order, "product": product, "instance": INSTANCE})
 .to(env["GLOBAL_APP_OUT"], StringSerde(), JsonSerde()))
(builder.stream(env["GLOBAL_APP_PROBES"], StringSerde(), JsonSerde())
 .process(Probe).to(env["GLOBAL_APP_PROBE_OUT"], StringSerde(), JsonSerde()))

app = App(
    builder,
    application_id=env["GLOBAL_APP_ID"],
    bootstrap_servers=env["GLOBAL_APP_BOOTSTRAP"],
    processing_guarantee="exactly_once",
    state_dir=env["GLOBAL_APP_STATE_DIR"],
    session_timeout_ms=6000,
    # A probe reads the whole 100k-entry store: a batch of probes on a loaded host can take
    # seconds, and a transaction older than its timeout is aborted by the broker (the app is
    # then fenced). A restart with the same state dir aborts its own open transaction at once.
    transaction_timeout_ms=60000,
    commit_interval_ms=100,
)
