"""Fraud detection: card payments (and account events) → alerts, on event time, exactly-once.

    payments ─┬─ sliding 10 min {count, total} ("fraud-velocity") ─┐
              ├─ sliding 5 min {countries} ("fraud-countries") ────┴─ merge ─► AlertOnce ─┐
              │                                             ("fraud-alerted" store)       ├─► alerts
              └─ join [t - N min, t] ("fraud-takeover") ─► takeover alerts ───────────────┘
    account events ─ filter(risky) ─┘

Rules, per card (the key of both inputs): more than MAX_PAYMENTS payments, or a total over
MAX_TOTAL, within any 10 minutes; payments from two or more countries within 5 minutes; a
payment at most N minutes after a password change or a login from a new device (an account
takeover pattern). The windowed aggregations emit every update, so an alert goes out with the
payment that crossed the line rather than when a window closes. Overlapping sliding windows
would repeat the same alert for one burst, so `AlertOnce` remembers per card and reason the
end of the last alerted window and stays quiet for windows overlapping it: one alert per
burst, again after the burst. The takeover rule is an inner stream-stream join: one alert per
(payment, risky event) pair, emitted when the second of the two arrives, so an event that
arrives after its payment (within the grace period) still flags it.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from typing import Any

from kstream import EXACTLY_ONCE, App, JoinWindows, Processor, Record, StreamBuilder, Topology
from kstream.demo import DemoSpec
from kstream.state import kv_store
from kstream.windows import SlidingWindows, field_timestamp
from serdes import JsonSerde, StringSerde, Windowed

INPUT = "fraud-payments"
EVENTS = "fraud-account-events"
OUTPUT = "fraud-alerts"

MINUTE = 60_000
MAX_PAYMENTS = 5  # more than this many payments within VELOCITY_WINDOW is an alert
MAX_TOTAL = 5000.0  # a total above this within VELOCITY_WINDOW is an alert
VELOCITY_WINDOW = 10 * MINUTE
COUNTRY_WINDOW = 5 * MINUTE
GRACE = 2 * MINUTE  # payment terminals report late; later records are dropped (and counted)
TAKEOVER_MINUTES = 10  # default N: a payment this soon after a risky account event is flagged

TOO_MANY = "too_many_payments"
HIGH_TOTAL = "high_total"
COUNTRY_CHANGE = "country_change"
ACCOUNT_TAKEOVER = "account_takeover"
PASSWORD_CHANGE = "password_change"  # account event types; a login may come from a new device
LOGIN = "login"
NEW_DEVICE_LOGIN = "new_device_login"  # the takeover alert's "trigger" for such a login
ALERTED_STORE = "fraud-alerted"


def _add_payment(_card: str, payment: dict[str, Any], agg: dict[str, Any]) -> dict[str, Any]:
    # Rounded at each step: totals are money, and JSON floats must compare exactly in tests.
    return {"count": agg["count"] + 1, "total": round(agg["total"] + payment["amount"], 2)}


def _add_country(_card: str, payment: dict[str, Any], countries: list[str]) -> list[str]:
    return sorted({*countries, payment["country"]})


def _alert(window: Windowed, reason: str, **details: Any) -> tuple[str, dict[str, Any]]:
    return window.key, {"card": window.key, "reason": reason, "window_start": window.start,
                        "window_end": window.end, **details}


def velocity_alerts(window: Windowed, agg: dict[str, Any] | None
                    ) -> list[tuple[str, dict[str, Any]]]:
    if agg is None:
        return []
    alerts = []
    if agg["count"] > MAX_PAYMENTS:
        alerts.append(_alert(window, TOO_MANY, payments=agg["count"], total=agg["total"]))
    if agg["total"] > MAX_TOTAL:
        alerts.append(_alert(window, HIGH_TOTAL, payments=agg["count"], total=agg["total"]))
    return alerts


def country_alerts(window: Windowed, countries: list[str] | None
                   ) -> list[tuple[str, dict[str, Any]]]:
    if not countries or len(countries) < 2:
        return []
    return [_alert(window, COUNTRY_CHANGE, countries=countries)]


def is_risky(_card: str, event: dict[str, Any]) -> bool:
    """Account events that make the next payments suspicious."""
    return event["type"] == PASSWORD_CHANGE or (event["type"] == LOGIN
                                                 and bool(event.get("new_device")))


def takeover_alert(payment: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """The join's result: the window runs from the risky event to the payment."""
    trigger = PASSWORD_CHANGE if event["type"] == PASSWORD_CHANGE else NEW_DEVICE_LOGIN
    return {"card": payment["card"], "reason": ACCOUNT_TAKEOVER, "window_start": event["ts"],
            "window_end": payment["ts"], "trigger": trigger, "device": event.get("device"),
            "amount": payment["amount"], "country": payment["country"]}


class AlertOnce(Processor):
    """Forwards an alert unless the same card and reason already alerted an overlapping window.

    State is a changelogged store (card → {reason: latest alerted window end}), so a restart
    or a moved partition does not repeat alerts.
    """

    def init(self, context: Any) -> None:
        super().init(context)
        self.alerted = context.get_store(ALERTED_STORE)

    def process(self, record: Record) -> None:
        alert = record.value
        seen: dict[str, int] = self.alerted.get(record.key) or {}
        last_end = seen.get(alert["reason"])
        if last_end is not None and alert["window_start"] <= last_end:
            return
        self.alerted.put(record.key, {**seen, alert["reason"]: max(alert["window_end"],
                                                                    last_end or 0)})
        self.context.forward(record)


def build(input_topic: str = INPUT, events_topic: str = EVENTS, output_topic: str = OUTPUT,
          *, takeover_minutes: float = TAKEOVER_MINUTES) -> Topology:
    """Topics in `kstream demo` order (inputs, then the output); `takeover_minutes` is N."""
    builder = StreamBuilder()
    payments = builder.stream(input_topic, key_serde=StringSerde(), value_serde=JsonSerde(),
                              timestamp_extractor=field_timestamp("ts"))
    events = builder.stream(events_topic, key_serde=StringSerde(), value_serde=JsonSerde(),
                            timestamp_extractor=field_timestamp("ts"))
    by_card = payments.group_by_key()
    velocity = (by_card.windowed_by(SlidingWindows(VELOCITY_WINDOW, grace=GRACE))
                .aggregate(lambda: {"count": 0, "total": 0.0}, _add_payment, "fraud-velocity")
                .to_stream().flat_map(velocity_alerts))
    countries = (by_card.windowed_by(SlidingWindows(COUNTRY_WINDOW, grace=GRACE))
                 .aggregate(list, _add_country, "fraud-countries")
                 .to_stream().flat_map(country_alerts))
    builder.topology.add_store(kv_store(ALERTED_STORE, key_serde=StringSerde(),
                                        value_serde=JsonSerde()))
    # A payment at t meets risky events of its card in [t - N, t]; both sides are buffered for
    # N + GRACE of stream time.
    takeovers = payments.join(
        events.filter(is_risky), takeover_alert,
        windows=JoinWindows(before=round(takeover_minutes * MINUTE), after=0, grace=GRACE),
        name="fraud-takeover")
    (velocity.merge(countries)
     .process(AlertOnce, ALERTED_STORE, name="fraud-alert-once")
     .merge(takeovers)
     .to(output_topic, key_serde=StringSerde(), value_serde=JsonSerde()))
    return builder.build()


app = App(build(), application_id="fraud",
          bootstrap_servers=os.environ.get("KSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
          processing_guarantee=EXACTLY_ONCE, auto_create_topics=True, topic_partitions=3)


# -- sample data -------------------------------------------------------------------------------
_COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL"]
SampleRecord = tuple[str, str, dict[str, Any], int]


def base_time(now_ms: int | None = None) -> int:
    """Three hours before the current hour: recent enough for topic retention, and the same
    for every call within one hour."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - now % 3_600_000 - 3 * 3_600_000


def payment(card: str, amount: float, country: str, ts: int) -> SampleRecord:
    return (INPUT, card, {"card": card, "amount": amount, "country": country, "ts": ts}, ts)


def account_event(card: str, kind: str, device: str, ts: int,
                  new_device: bool = False) -> SampleRecord:
    return (EVENTS, card, {"card": card, "type": kind, "device": device,
                           "new_device": new_device, "ts": ts}, ts)


def _frauds(base: int) -> list[SampleRecord]:
    """Three planted patterns: a burst, a big spender and a card in two countries."""
    burst = [payment("card-0007", 19.99 + i, "DE", base + 30 * MINUTE + i * 50_000)
             for i in range(7)]
    big = [payment("card-0013", amount, "FR", base + 60 * MINUTE + i * 3 * MINUTE)
           for i, amount in enumerate([2400.0, 1800.0, 1500.0])]
    travel = [payment("card-0021", 42.0, "NL", base + 90 * MINUTE),
              payment("card-0021", 55.5, "ES", base + 93 * MINUTE)]
    return burst + big + travel


def _takeovers(base: int) -> list[SampleRecord]:
    """Planted account takeovers: a payment 4 minutes after a login from a new device, and
    payments 2 and 25 minutes after a password change (only the first within the default N)."""
    return [account_event("card-0031", LOGIN, "laptop-7f3a", base + 40 * MINUTE, new_device=True),
            payment("card-0031", 480.0, "DE", base + 44 * MINUTE),
            account_event("card-0042", PASSWORD_CHANGE, "phone-0042", base + 70 * MINUTE),
            payment("card-0042", 899.0, "FR", base + 72 * MINUTE),
            payment("card-0042", 35.0, "FR", base + 95 * MINUTE)]


def generate(count: int, now_ms: int | None = None) -> list[SampleRecord]:
    """`count` records over two hours for count // 10 cards (at least 20), deterministic for a
    given count within one hour: about one account event (a login from the card holder's own
    phone) for every nine payments, ordinary cards paying modestly from their home country,
    and the planted frauds."""
    rng = random.Random(count)
    base = base_time(now_ms)
    planted = (_frauds(base) + _takeovers(base))[:count]
    planted_cards = {key for _, key, _, _ in _frauds(base) + _takeovers(base)}
    cards = [card for card in (f"card-{i:04d}" for i in range(max(20, count // 10)))
             if card not in planted_cards]
    home = {card: rng.choice(_COUNTRIES) for card in cards}
    normal = []
    for i in range(count - len(planted)):
        card, ts = rng.choice(cards), base + rng.randrange(120 * MINUTE)
        if i % 10 == 9:
            normal.append(account_event(card, LOGIN, f"phone-{card[5:]}", ts))
        else:
            normal.append(payment(card, round(rng.uniform(3, 250), 2), home[card], ts))
    records = sorted(planted + normal, key=lambda r: r[3])
    # A few records arrive a little late (within the grace period), as from real terminals.
    for i in range(5, len(records) - 1, 37):
        if records[i + 1][3] - records[i][3] < GRACE // 2:
            records[i], records[i + 1] = records[i + 1], records[i]
    return records


# -- results -----------------------------------------------------------------------------------
def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M:%S")


def describe(alert: dict[str, Any]) -> str:
    span = f"{_hhmm(alert['window_start'])}-{_hhmm(alert['window_end'])}"
    if alert["reason"] == TOO_MANY:
        what = f"too many payments ({alert['payments']} in {VELOCITY_WINDOW // MINUTE} min)"
    elif alert["reason"] == HIGH_TOTAL:
        what = f"high total ({alert['total']:.2f} in {VELOCITY_WINDOW // MINUTE} min)"
    elif alert["reason"] == ACCOUNT_TAKEOVER:
        after = (alert["window_end"] - alert["window_start"]) / MINUTE
        event = ("a password change" if alert["trigger"] == PASSWORD_CHANGE
                 else f"a login from a new device ({alert['device']})")
        what = f"paid {alert['amount']:.2f} {after:g} min after {event}"
    else:
        what = (f"payments from {', '.join(alert['countries'])} "
                f"within {COUNTRY_WINDOW // MINUTE} min")
    return f"card {alert['card']} {what}, window {span} UTC"


def summarize(outputs: dict[str, list[Record]]) -> str:
    alerts = sorted((r.value for r in outputs[OUTPUT]),
                    key=lambda a: (a["window_end"], a["card"], a["reason"], a["window_start"]))
    cards = {a["card"] for a in alerts}
    lines = [f"{len(alerts)} alerts for {len(cards)} cards:"]
    lines += [f"  {describe(a)}" for a in alerts[:20]]
    if len(alerts) > 20:
        lines.append(f"  ... and {len(alerts) - 20} more")
    return "\n".join(lines)


DEMO = DemoSpec(build=build, inputs={INPUT: 3, EVENTS: 3},
                input_serdes={INPUT: (StringSerde(), JsonSerde()),
                              EVENTS: (StringSerde(), JsonSerde())},
                outputs={OUTPUT: (StringSerde(), JsonSerde())},
                generate=generate, summarize=summarize, default_records=2000,
                # Both topics are filled before the app starts: the takeover join needs the
                # two read in timestamp order, or the events look late.
                settings={"processing_guarantee": EXACTLY_ONCE, "timestamp_ordering": True})
