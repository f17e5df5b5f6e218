"""The status page (`GET /` of the query server) and the JSON it refreshes from.

One self-contained HTML page: the topology drawn as inline SVG (kstream.diagram, from
kstream.describe's mermaid text; no script library, no network), and tables of the assigned
partitions (state, consumer lag, records in/out and their rates), stores (approximate
entries) and restores, refreshed every 2 s by `fetch("status.json")`. Rates are computed in the
page from two consecutive samples.
"""

from __future__ import annotations

import time
from html import escape
from typing import TYPE_CHECKING, Any

from kstream.describe import describe_mermaid
from kstream.diagram import render_svg
from kstream.errors import StoreNotAvailableError

if TYPE_CHECKING:
    from kstream.app import App

REFRESH_MS = 2000


def status(app: App) -> dict[str, Any]:
    """What the page shows, as JSON: engine state, readiness, partitions, stores, restores."""
    engine = app._engine
    ready, reasons = app.readiness()
    out: dict[str, Any] = {
        "application_id": app.config.application_id,
        "endpoint": app.config.advertised_server,
        "engine_state": engine.life.state.value if engine is not None else "created",
        "ready": ready,
        "reasons": reasons,
        "stats": app.stats,
        "time_ms": int(time.time() * 1000),
        "partitions": [],
        "stores": [],
        "restores": [],
    }
    if engine is None:
        return out
    queries, meters = engine.queries, engine.meters
    state = "processing" if queries.state == "running" else queries.state
    for index, partition in sorted(queries.assignment):
        sub = queries.subtopologies[index]
        for topic in sub.source_topics:
            counts = meters.partitions.get((topic, partition))
            out["partitions"].append({
                "topic": topic, "partition": partition, "task": f"{index}_{partition}",
                "state": state,
                "lag": None if counts is None else counts.lag,
                "records_in": 0 if counts is None else counts.records_in,
                "records_out": 0 if counts is None else counts.records_out})
    for name in sorted(app.topology.stores):
        try:
            sizes = app.store(name).approximate_counts()
        except StoreNotAvailableError:
            continue
        out["stores"] += [{"store": name, "partition": p, "approximate_entries": n}
                          for p, n in sorted(sizes.items())]
    out["restores"] = [{"store": r.store, "partition": r.partition, "topic": r.topic,
                        "position": r.position, "end": r.end, "remaining": r.remaining,
                        "records": r.records}
                       for _, r in sorted(dict(meters.restores).items())]
    return out


def render_status_page(app: App) -> str:
    app_id = app.config.application_id
    mermaid = describe_mermaid(app.topology, app_id)
    return (_PAGE.replace("{{APP}}", escape(app_id))
            .replace("{{SVG}}", render_svg(mermaid))
            .replace("{{MERMAID}}", escape(mermaid))
            .replace("{{REFRESH_MS}}", str(REFRESH_MS)))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>kstream · {{APP}}</title>
<style>
 body { font-family: sans-serif; margin: 1.5em; color: #222; }
 h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.4em; }
 .badge { font-size: .7em; padding: .2em .6em; border-radius: 1em; background: #ddd; }
 .badge.ready { background: #cdeccd; } .badge.notready { background: #f6d3cf; }
 .diagram { overflow-x: auto; border: 1px solid #e3e6ee; padding: .5em; }
 table { border-collapse: collapse; } th, td { padding: .25em .8em; text-align: right; }
 th { background: #f0f2f7; } td.text, th.text { text-align: left; }
 tr:nth-child(even) td { background: #fafbfd; }
 #error { color: #b00; }
</style></head>
<body>
<h1>{{APP}} <span id="state" class="badge">loading…</span></h1>
<p id="summary"></p><p id="error"></p>
<h2>Topology</h2>
<div class="diagram">{{SVG}}</div>
<details><summary>mermaid source</summary><pre id="mermaid">{{MERMAID}}</pre></details>
<h2>Partitions</h2>
<table id="partitions"><thead><tr><th class="text">topic</th><th>partition</th>
<th class="text">task</th><th class="text">state</th><th>lag</th><th>records in</th>
<th>in/s</th><th>records out</th><th>out/s</th></tr></thead><tbody></tbody></table>
<h2>Stores</h2>
<table id="stores"><thead><tr><th class="text">store</th><th>partition</th>
<th>approximate entries</th></tr></thead><tbody></tbody></table>
<h2>Restores</h2>
<table id="restores"><thead><tr><th class="text">store</th><th>partition</th>
<th>records restored</th><th>offsets remaining</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
let previous = null;
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function fill(id, rows, build) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement("tr");
    build(tr, item);
    body.appendChild(tr);
  }
}
function rate(now, before, key, seconds) {
  if (!before || seconds <= 0) return "–";
  return ((now[key] - before[key]) / seconds).toFixed(1);
}
function render(s) {
  const state = document.getElementById("state");
  state.textContent = s.ready ? "ready" : "not ready: " + s.reasons.join(", ");
  state.className = "badge " + (s.ready ? "ready" : "notready");
  document.getElementById("summary").textContent =
    "engine " + s.engine_state + " · endpoint " + (s.endpoint || "–") + " · records in " +
    (s.stats.records_in || 0) + " · out " + (s.stats.records_out || 0) + " · commits " +
    (s.stats.commits || 0);
  const before = {};
  let seconds = 0;
  if (previous) {
    seconds = (s.time_ms - previous.time_ms) / 1000;
    for (const p of previous.partitions) before[p.topic + "/" + p.partition] = p;
  }
  fill("partitions", s.partitions, (tr, p) => {
    tr.dataset.topic = p.topic;
    tr.dataset.partition = p.partition;
    const old = before[p.topic + "/" + p.partition];
    cell(tr, p.topic, "text"); cell(tr, p.partition); cell(tr, p.task, "text");
    cell(tr, p.state, "text state");
    const lag = cell(tr, p.lag === null ? "–" : String(p.lag), "lag");
    lag.id = "lag-" + p.topic + "-" + p.partition;
    cell(tr, p.records_in); cell(tr, rate(p, old, "records_in", seconds));
    cell(tr, p.records_out); cell(tr, rate(p, old, "records_out", seconds));
  });
  fill("stores", s.stores, (tr, st) => {
    cell(tr, st.store, "text"); cell(tr, st.partition); cell(tr, st.approximate_entries);
  });
  fill("restores", s.restores, (tr, r) => {
    cell(tr, r.store, "text"); cell(tr, r.partition); cell(tr, r.records);
    cell(tr, r.remaining);
  });
  previous = s;
}
async function refresh() {
  try {
    const response = await fetch("status.json", {cache: "no-store"});
    render(await response.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "status unavailable: " + e;
  }
}
refresh();
setInterval(refresh, {{REFRESH_MS}});
</script>
</body></html>
"""
