"""fraud: exact alerts in the driver (bursts, big totals, country changes, payments soon after
a password change or a new-device login; out-of-window, out-of-order and late records), the
same alerts on the real broker, and `kstream demo fraud`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from topology_helpers import produce_live, run_demo, time_steps

from kstream import App, Record
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from serdes import JsonSerde, StringSerde
from topologies import fraud

T = 1_700_000_000_000
M = 60_000


def pay(card: str, amount: float, country: str, ts: int) -> tuple[str, dict[str, Any]]:
    return card, {"card": card, "amount": amount, "country": country, "ts": T + ts}


def event(card: str, kind: str, ts: int, device: str = "phone", new_device: bool = False
          ) -> tuple[str, dict[str, Any]]:
    return card, {"card": card, "type": kind, "device": device, "new_device": new_device,
                  "ts": T + ts}


def alert(card: str, reason: str, start: int, end: int, **details: Any) -> dict[str, Any]:
    return {"card": card, "reason": reason, "window_start": T + start, "window_end": T + end,
            **details}


def takeover(card: str, event_ts: int, pay_ts: int, trigger: str, amount: float,
             device: str = "phone", country: str = "DE") -> dict[str, Any]:
    return alert(card, fraud.ACCOUNT_TAKEOVER, event_ts, pay_ts, trigger=trigger,
                 device=device, amount=amount, country=country)


def run_driver(inputs: list[tuple[str, dict[str, Any]]], partitions: int = 1,
               **build: Any) -> tuple[list[Record], int]:
    """Alerts in output order, and the late-record count. `inputs` are payments and account
    events (told apart by the "type" an event has)."""
    with TopologyTestDriver(fraud.build(**build), partitions={
            fraud.INPUT: partitions, fraud.EVENTS: partitions}) as driver:
        pipes = {topic: driver.input_topic(topic, StringSerde(), JsonSerde())
                 for topic in (fraud.INPUT, fraud.EVENTS)}
        for card, value in inputs:
            # timestamps come from value["ts"]
            pipes[fraud.EVENTS if "type" in value else fraud.INPUT].pipe(card, value)
        out = driver.output_topic(fraud.OUTPUT, StringSerde(), JsonSerde())
        late = sum(task.dropped_late for task in driver._tasks.values())
        return out.read_records_to_list(), late


def test_fraud_alerts_in_the_driver() -> None:
    payments = [pay("a", 10.0, "DE", i * M) for i in range(7)]  # 7 in 6 min: one alert at #6
    payments += [pay("b", 3000.0, "FR", 10 * M), pay("b", 2500.5, "FR", 19 * M)]
    payments += [pay("c", 5.0, "DE", 20 * M), pay("c", 6.0, "FR", 23 * M),
                 pay("c", 7.0, "DE", 40 * M), pay("c", 8.0, "IT", 42 * M)]
    # d: the 6th payment arrives out of order, within the 2-minute grace period
    payments += [pay("d", 1.0, "PL", (50 + i) * M) for i in range(5)]
    payments += [pay("d", 2.0, "PL", 49 * M + 30_000)]
    # e: the 6th payment arrives after stream time moved 20 min on (f): late, dropped
    payments += [pay("e", 1.0, "ES", (55 + i) * M) for i in range(5)]
    payments += [pay("f", 1.0, "ES", 80 * M), pay("e", 1.0, "ES", 59 * M + 30_000)]
    records, late = run_driver(payments)
    assert [(r.key, r.value, r.timestamp - T) for r in records] == [
        ("a", alert("a", fraud.TOO_MANY, -5 * M, 5 * M, payments=6, total=60.0), 5 * M),
        ("b", alert("b", fraud.HIGH_TOTAL, 9 * M, 19 * M, payments=2, total=5500.5), 19 * M),
        ("c", alert("c", fraud.COUNTRY_CHANGE, 18 * M, 23 * M, countries=["DE", "FR"]), 23 * M),
        # DE at 40 is 17 min after FR: no alert; IT at 42 is a new, non-overlapping window
        ("c", alert("c", fraud.COUNTRY_CHANGE, 37 * M, 42 * M, countries=["DE", "IT"]), 42 * M),
        # stamped with the window's newest payment (KIP-258), not the late one at 49:30
        ("d", alert("d", fraud.TOO_MANY, 44 * M, 54 * M, payments=6, total=7.0), 54 * M),
    ]
    # e's last payment, dropped by both windowed aggregations and by the takeover join; d's
    # 6th payment, 4.5 min behind stream time, is late only for the join (its sliding windows
    # are still open, but the join drops what is older than stream time - grace)
    assert late == 4
    summary = fraud.summarize({fraud.OUTPUT: records})
    assert summary.startswith("5 alerts for 4 cards:")
    assert "card a too many payments (6 in 10 min)" in summary
    assert "card c payments from DE, IT within 5 min" in summary


def test_fraud_alerts_again_after_a_burst_and_per_reason_in_the_driver() -> None:
    # 6 payments of 1000 in 5 minutes: both rules fire once; 30 min later, a new burst
    payments = [pay("g", 1000.0, "DE", i * M) for i in range(6)]
    payments += [pay("g", 1000.0, "DE", (30 + i) * M) for i in range(6)]
    records, _ = run_driver(payments, partitions=3)
    got = [(r.value["reason"], r.value["window_end"] - T, r.value["total"]) for r in records]
    assert got == [(fraud.TOO_MANY, 5 * M, 6000.0), (fraud.HIGH_TOTAL, 5 * M, 6000.0),
                   (fraud.TOO_MANY, 35 * M, 6000.0), (fraud.HIGH_TOTAL, 35 * M, 6000.0)]


def test_fraud_takeover_alerts_in_the_driver() -> None:
    """The stream-stream join: payments at most N (10) minutes after a password change or a
    login from a new device, per card; grace 2 minutes."""
    pw, login, new_login = fraud.PASSWORD_CHANGE, fraud.LOGIN, fraud.NEW_DEVICE_LOGIN
    steps = [
        event("h", login, 0, device="tablet", new_device=True),
        pay("h", 120.0, "DE", 4 * M),                 # 4 min after: flagged
        pay("h", 15.0, "DE", 10 * M + 1),             # 10 min + 1 ms after: outside the window
        event("i", pw, 10 * M),
        pay("i", 60.0, "DE", 20 * M),                 # exactly 10 min after: flagged
        event("k", login, 21 * M),                    # a known device: not risky
        pay("k", 33.0, "DE", 22 * M),
        pay("l", 70.0, "DE", 23 * M),
        event("l", pw, 24 * M),                       # after the payment: not followed by one
        pay("m", 80.0, "DE", 30 * M),
        event("m", login, 28 * M + 30_000, device="pc", new_device=True),  # out of order,
        #                                               within grace: flags the 30-min payment
        event("n", pw, 31 * M),
        event("n", login, 32 * M, device="pc", new_device=True),
        pay("n", 90.0, "DE", 33 * M),                 # after both: one alert per event
        pay("o", 10.0, "DE", 40 * M),                 # moves stream time on
        event("p", pw, 37 * M),                       # 3 min behind stream time: late, dropped
        pay("p", 50.0, "DE", 38 * M),                 # exactly grace behind: on time, but p's
        pay("p", 55.0, "DE", 41 * M),                 # event was dropped, so no alerts
        event("r", pw, 42 * M),
        pay("s", 10.0, "DE", 44 * M),
        pay("r", 25.0, "DE", 43 * M),                 # out of order, within grace: flagged
    ]
    records, late = run_driver(steps)
    assert [(r.key, r.value, r.timestamp - T) for r in records] == [
        ("h", takeover("h", 0, 4 * M, new_login, 120.0, device="tablet"), 4 * M),
        ("i", takeover("i", 10 * M, 20 * M, pw, 60.0), 20 * M),
        ("m", takeover("m", 28 * M + 30_000, 30 * M, new_login, 80.0, device="pc"), 30 * M),
        ("n", takeover("n", 31 * M, 33 * M, pw, 90.0), 33 * M),
        ("n", takeover("n", 32 * M, 33 * M, new_login, 90.0, device="pc"), 33 * M),
        ("r", takeover("r", 42 * M, 43 * M, pw, 25.0), 43 * M),
    ]
    assert late == 1  # p's password change
    summary = fraud.summarize({fraud.OUTPUT: records})
    assert summary.startswith("6 alerts for 5 cards:")
    assert "card h paid 120.00 4 min after a login from a new device (tablet)" in summary
    assert "card i paid 60.00 10 min after a password change" in summary


def test_fraud_takeover_window_is_a_parameter() -> None:
    steps = [event("q", fraud.PASSWORD_CHANGE, 0), pay("q", 20.0, "DE", 12 * M)]
    assert run_driver(steps, takeover_minutes=10)[0] == []
    records, _ = run_driver(steps, takeover_minutes=15)
    assert [r.value for r in records] == [
        takeover("q", 0, 12 * M, fraud.PASSWORD_CHANGE, 20.0)]


def _canonical(key: str, value: Any) -> tuple[str, bytes]:
    return key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_fraud_on_kafka_matches_the_in_process_run(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                   tmp_path: Path) -> None:
    """Payments and account events arrive as live traffic (a grace period of event time at a
    time), plus one late password change that would have flagged card-0031's payment: the
    broker's alerts equal the driver's, each exactly once, and both drop the same records."""
    sample = fraud.generate(400)
    pay_31 = next(ts for topic, card, _, ts in sample
                  if topic == fraud.INPUT and card == "card-0031")
    too_late = fraud.account_event("card-0031", fraud.PASSWORD_CHANGE, "phone-0031", pay_31 - M)
    steps = time_steps(sample, fraud.GRACE) + [[too_late]]
    with TopologyTestDriver(fraud.build(), partitions={fraud.INPUT: 3, fraud.EVENTS: 3}) as driver:
        pipes = {topic: driver.input_topic(topic, StringSerde(), JsonSerde())
                 for topic in (fraud.INPUT, fraud.EVENTS)}
        for step in steps:
            for topic, card, value, ts in step:
                pipes[topic].pipe(card, value, ts)
        out = driver.output_topic(fraud.OUTPUT, StringSerde(), JsonSerde())
        want = Counter(_canonical(r.key, r.value) for r in out.read_records_to_list())
        want_late = sum(task.dropped_late for task in driver._tasks.values())
    reasons = Counter(orjson.loads(value)["reason"] for _, value in want.elements())
    assert reasons[fraud.ACCOUNT_TAKEOVER] == 2 and len(reasons) == 4  # every rule fired
    assert want_late == 1  # the late password change

    topics = {t: topic_factory(partitions=3, prefix=t) for t in (fraud.INPUT, fraud.EVENTS)}
    outp = topic_factory(partitions=3, prefix=fraud.OUTPUT)
    app = App(fraud.build(topics[fraud.INPUT], topics[fraud.EVENTS], outp),
              application_id=kafka.unique_name("fraud"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app) as run:
        assert produce_live(kafka, run, topics, 3, steps) == len(sample) + 1
        kafka.read_topic(outp, min_count=sum(want.values()), timeout=90)
        assert app.stats["late_records"] == want_late
    # Read again once the app has stopped: nothing more can come, so equal counts mean no
    # duplicates and no losses.
    got = Counter(_canonical(r.key.decode(), orjson.loads(r.value))  # type: ignore[union-attr, arg-type]
                  for r in kafka.read_topic(outp, timeout=60))
    assert got == want


def test_fraud_demo_command_prints_alerts(kafka: KafkaCluster) -> None:
    proc = run_demo(kafka, "fraud", 300)
    assert "produced 300 sample records" in proc.stdout
    assert "card card-0007 too many payments (6 in 10 min)" in proc.stdout
    assert "card card-0021 payments from ES, NL within 5 min" in proc.stdout
    assert ("card card-0031 paid 480.00 4 min after a login from a new device (laptop-7f3a)"
            in proc.stdout)
    assert "card card-0042 paid 899.00 2 min after a password change" in proc.stdout
    assert "card card-0042 paid 35.00" not in proc.stdout  # 25 min after: outside the window
