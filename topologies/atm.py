"""ATM monitoring: withdrawals → final 10-minute totals, activity sessions and large-withdrawal
alerts per card, on event time, exactly-once; and each withdrawal with its ATM's location.

    withdrawals ─┬─ tumbling 10 min, final {count, total} ───────► atm-totals
                 ├─ sessions, 5 min gap, final {count, total, atms} ─► atm-sessions
                 ├─ filter amount >= LARGE_AMOUNT ───────────────────► atm-alerts
                 └─ select_key(atm) ─► repartition ("atm-location") ─┬─ left join ─► atm-enriched
    atm-locations ─► table (store "atm-locations") ──────────────────┘

Totals and sessions are final-only: one record per window or session once it can no longer
change (stream time past its end + grace, plus the gap for sessions), so downstream systems
see no corrections. Withdrawals later than that are dropped and counted.

The enrichment is a stream-table left join: withdrawals are keyed by card, the locations table
by ATM id, so the stream is re-keyed and repartitioned by ATM first. Each withdrawal meets the
table's value when it is processed, not as of its own event time (Kafka Streams' behaviour with
a non-versioned table), late ones included; an ATM the table does not know gives null location
fields rather than a lost withdrawal.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from typing import Any

from kstream import EXACTLY_ONCE, App, Record, StreamBuilder, Topology
from kstream.demo import DemoSpec
from kstream.windows import SessionWindows, TumblingWindows, field_timestamp
from serdes import JsonSerde, StringSerde, Windowed, WindowedSerde

INPUT = "atm-withdrawals"
LOCATIONS = "atm-locations"
TOTALS = "atm-totals"
SESSIONS = "atm-sessions"
ALERTS = "atm-alerts"
ENRICHED = "atm-enriched"
LOCATIONS_STORE = "atm-locations"

MINUTE = 60_000
WINDOW = 10 * MINUTE
SESSION_GAP = 5 * MINUTE
GRACE = MINUTE
LARGE_AMOUNT = 500

WINDOWED_KEY = WindowedSerde(StringSerde())


def _add_to_total(_card: str, w: dict[str, Any], agg: dict[str, Any]) -> dict[str, Any]:
    return {"count": agg["count"] + 1, "total": agg["total"] + w["amount"]}


def _add_to_session(_card: str, w: dict[str, Any], agg: dict[str, Any]) -> dict[str, Any]:
    return {"count": agg["count"] + 1, "total": agg["total"] + w["amount"],
            "atms": sorted({*agg["atms"], w["atm"]})}


def _merge_sessions(_card: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {"count": a["count"] + b["count"], "total": a["total"] + b["total"],
            "atms": sorted({*a["atms"], *b["atms"]})}


def _session_init() -> dict[str, Any]:
    return {"count": 0, "total": 0, "atms": []}


def _with_window(window: Windowed, agg: dict[str, Any]) -> tuple[Windowed, dict[str, Any]]:
    return window, {"card": window.key, "start": window.start, "end": window.end, **agg}


def _alert(w: dict[str, Any]) -> dict[str, Any]:
    return {"card": w["card"], "reason": "large_withdrawal", "atm": w["atm"],
            "amount": w["amount"], "ts": w["ts"]}


def _located(w: dict[str, Any], location: dict[str, Any] | None) -> dict[str, Any]:
    """The left join's result: null location fields for an ATM the table does not know."""
    return {**w, "branch": location and location["branch"], "city": location and location["city"]}


def build(input_topic: str = INPUT, locations_topic: str = LOCATIONS, totals_topic: str = TOTALS,
          sessions_topic: str = SESSIONS, alerts_topic: str = ALERTS,
          enriched_topic: str = ENRICHED) -> Topology:
    """Topics in `kstream demo` order: inputs, then outputs."""
    builder = StreamBuilder()
    withdrawals = builder.stream(input_topic, key_serde=StringSerde(), value_serde=JsonSerde(),
                                 timestamp_extractor=field_timestamp("ts"))
    by_card = withdrawals.group_by_key()
    (by_card.windowed_by(TumblingWindows(WINDOW, grace=GRACE))
     .aggregate(lambda: {"count": 0, "total": 0}, _add_to_total, "atm-totals", emit="final")
     .to_stream().map(_with_window)
     .to(totals_topic, key_serde=WINDOWED_KEY, value_serde=JsonSerde()))
    (by_card.windowed_by(SessionWindows(SESSION_GAP, grace=GRACE))
     .aggregate(_session_init, _add_to_session, "atm-sessions", merger=_merge_sessions,
                emit="final")
     .to_stream().map(_with_window)
     .to(sessions_topic, key_serde=WINDOWED_KEY, value_serde=JsonSerde()))
    (withdrawals.filter(lambda _card, w: w["amount"] >= LARGE_AMOUNT)
     .map_values(_alert)
     .to(alerts_topic, key_serde=StringSerde(), value_serde=JsonSerde()))
    locations = builder.table(locations_topic, StringSerde(), JsonSerde(), name=LOCATIONS_STORE)
    (withdrawals.select_key(lambda _card, w: w["atm"])
     .left_join(locations, _located, name="atm-location")  # <app>-atm-location-repartition
     .to(enriched_topic, key_serde=StringSerde(), value_serde=JsonSerde()))
    return builder.build()


app = App(build(), application_id="atm",
          bootstrap_servers=os.environ.get("KSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
          processing_guarantee=EXACTLY_ONCE, auto_create_topics=True, topic_partitions=3)


# -- sample data -------------------------------------------------------------------------------
SampleRecord = tuple[str, str, dict[str, Any], int]
# Zero-amount records two hours after the sample, one per card here: they move every task's
# stream time past every window, so all final results come out. Eight keys land on every
# partition of a 3-partition topic with both murmur2 (Java clients, kstream's own producer)
# and CRC32 (librdkafka's default), see the tests.
FLUSH_CARDS = [f"flush-{i}" for i in range(8)]
FLUSH_AFTER = 120 * MINUTE
_AMOUNTS = [20, 20, 40, 50, 50, 50, 100, 100, 100, 100, 200, 200, 200, 300, 400, 600, 1000]
# The locations table: atm-01 to atm-11. atm-12 (new, not registered yet) and the flush
# records' atm-00 are missing, so some withdrawals show the left join's null location.
_SITES = [("Alexanderplatz", "Berlin"), ("Kreuzberg", "Berlin"), ("Altona", "Hamburg"),
          ("Jungfernstieg", "Hamburg"), ("Marienplatz", "Munich"), ("Schwabing", "Munich"),
          ("Dom", "Cologne"), ("Ehrenfeld", "Cologne"), ("Zeil", "Frankfurt"),
          ("Sachsenhausen", "Frankfurt"), ("Königstraße", "Stuttgart")]


def base_time(now_ms: int | None = None) -> int:
    """Four hours before the current hour: recent enough for topic retention, and the same
    for every call within one hour."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - now % 3_600_000 - 4 * 3_600_000


def withdrawal(card: str, atm: str, amount: int, ts: int) -> SampleRecord:
    return (INPUT, card, {"card": card, "atm": atm, "amount": amount, "ts": ts}, ts)


def location(atm: str, branch: str, city: str, ts: int) -> SampleRecord:
    """A locations-table record (keyed by ATM id)."""
    return (LOCATIONS, atm, {"atm": atm, "branch": branch, "city": city}, ts)


def generate(count: int, now_ms: int | None = None) -> list[SampleRecord]:
    """`count` records: the locations table (an hour before the rest), visits of 1-4
    withdrawals a few minutes apart over two hours for count // 5 cards (at least 10), then the
    flush tail; deterministic for a given count within one hour."""
    rng = random.Random(count)
    base = base_time(now_ms)
    sites = [location(f"atm-{i:02d}", branch, city, base - 60 * MINUTE)
             for i, (branch, city) in enumerate(_SITES, 1)][:count]
    flush = FLUSH_CARDS[:count - len(sites)]
    wanted = count - len(sites) - len(flush)
    cards = [f"card-{i:03d}" for i in range(max(10, count // 5))]
    records: list[SampleRecord] = []
    while len(records) < wanted:
        card, ts = rng.choice(cards), base + rng.randrange(120 * MINUTE)
        for _ in range(min(rng.randint(1, 4), wanted - len(records))):
            records.append(withdrawal(card, f"atm-{rng.randint(1, 12):02d}",
                                      rng.choice(_AMOUNTS), ts))
            ts += rng.randint(30_000, 4 * MINUTE)
    records.sort(key=lambda r: r[3])
    # A few withdrawals reach us out of order, as from ATMs that were briefly offline.
    # Swapped only when less than the grace period apart, so none of them is late.
    for i in range(7, len(records) - 1, 29):
        if records[i + 1][3] - records[i][3] < GRACE // 2:
            records[i], records[i + 1] = records[i + 1], records[i]
    end = max((r[3] for r in records), default=base) + FLUSH_AFTER
    return sites + records + [withdrawal(card, "atm-00", 0, end) for card in flush]


# -- results -----------------------------------------------------------------------------------
def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M")


def summarize(outputs: dict[str, list[Record]]) -> str:
    totals = [r.value for r in outputs[TOTALS]]
    sessions = [r.value for r in outputs[SESSIONS]]
    alerts = [r.value for r in outputs[ALERTS]]
    lines = [f"{len(totals)} final 10-minute totals covering "
             f"{sum(t['count'] for t in totals)} withdrawals; largest:"]
    for t in sorted(totals, key=lambda t: (-t["total"], t["start"], t["card"]))[:5]:
        lines.append(f"  card {t['card']} {_hhmm(t['start'])}-{_hhmm(t['end'])} UTC: "
                     f"{t['total']} in {t['count']} withdrawals")
    lines.append(f"{len(sessions)} card sessions covering "
                 f"{sum(s['count'] for s in sessions)} withdrawals; longest:")
    for s in sorted(sessions, key=lambda s: (-(s["end"] - s["start"]), s["start"], s["card"]))[:5]:
        lines.append(f"  card {s['card']} {_hhmm(s['start'])}-{_hhmm(s['end'])} UTC: "
                     f"{s['count']} withdrawals, {s['total']} total at {', '.join(s['atms'])}")
    lines.append(f"{len(alerts)} large-withdrawal alerts (>= {LARGE_AMOUNT}); first:")
    for a in sorted(alerts, key=lambda a: (a["ts"], a["card"]))[:5]:
        lines.append(f"  card {a['card']} took {a['amount']} at {a['atm']} {_hhmm(a['ts'])} UTC")
    enriched = [r.value for r in outputs[ENRICHED]]
    per_city: dict[str, list[int]] = {}
    for e in enriched:
        if e["city"] is not None:
            per_city.setdefault(e["city"], []).append(e["amount"])
    unknown = sorted({e["atm"] for e in enriched if e["city"] is None})
    lines.append(f"{len(enriched)} withdrawals enriched with their ATM's location; per city:")
    for city, amounts in sorted(per_city.items(), key=lambda c: (-sum(c[1]), c[0])):
        lines.append(f"  {city}: {len(amounts)} withdrawals, {sum(amounts)} total")
    lines.append(f"  at ATMs missing from the locations table ({', '.join(unknown) or 'none'}): "
                 f"{sum(1 for e in enriched if e['city'] is None)}")
    return "\n".join(lines)


DEMO = DemoSpec(build=build, inputs={INPUT: 3, LOCATIONS: 3},
                input_serdes={INPUT: (StringSerde(), JsonSerde()),
                              LOCATIONS: (StringSerde(), JsonSerde())},
                outputs={TOTALS: (WINDOWED_KEY, JsonSerde()), SESSIONS: (WINDOWED_KEY, JsonSerde()),
                         ALERTS: (StringSerde(), JsonSerde()),
                         ENRICHED: (StringSerde(), JsonSerde())},
                generate=generate, summarize=summarize, default_records=2000,
                settings={"processing_guarantee": EXACTLY_ONCE})
