"""fraud: exact alerts in the driver (bursts, big totals, country changes, out-of-order and late
payments), the same alerts on the real broker, and `kstream demo fraud`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from topology_helpers import produce_like_driver, run_demo

from kstream import App, Record
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from serdes import JsonSerde, StringSerde
from topologies import fraud

T = 1_700_000_000_000
M = 60_000


def pay(card: str, amount: float, country: str, ts: int) -> tuple[str, dict[str, Any]]:
    return card, {"card": card, "amount": amount, "country": country, "ts": T + ts}


def alert(card: str, reason: str, start: int, end: int, **details: Any) -> dict[str, Any]:
    return {"card": card, "reason": reason, "window_start": T + start, "window_end": T + end,
            **details}


def run_driver(payments: list[tuple[str, dict[str, Any]]], partitions: int = 1
               ) -> tuple[list[Record], int]:
    """Alerts in output order, and the late-record count."""
    with TopologyTestDriver(fraud.build(), partitions={fraud.INPUT: partitions}) as driver:
        pipe = driver.input_topic(fraud.INPUT, StringSerde(), JsonSerde())
        for card, value in payments:
            pipe.pipe(card, value)  # timestamps come from value["ts"]
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
        ("d", alert("d", fraud.TOO_MANY, 44 * M, 54 * M, payments=6, total=7.0), 49 * M + 30_000),
    ]
    assert late == 2  # e's last payment, dropped by both windowed aggregations
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


def test_fraud_on_kafka_matches_the_in_process_run(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    sample = fraud.generate(400)
    with TopologyTestDriver(fraud.build(), partitions={fraud.INPUT: 3}) as driver:
        pipe = driver.input_topic(fraud.INPUT, StringSerde(), JsonSerde())
        for _, card, value, ts in sample:
            pipe.pipe(card, value, ts)
        out = driver.output_topic(fraud.OUTPUT, StringSerde(), JsonSerde())
        want = Counter((r.key, orjson.dumps(r.value, option=orjson.OPT_SORT_KEYS))
                       for r in out.read_records_to_list())
    assert sum(want.values()) >= 3  # the planted frauds at least

    inp, outp = topic_factory(partitions=3), topic_factory(partitions=3)
    produce_like_driver(kafka, inp, 3, sample)
    app = App(fraud.build(inp, outp), application_id=kafka.unique_name("fraud"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        records = kafka.read_topic(outp, min_count=sum(want.values()), timeout=90)
    got = Counter((r.key.decode(), orjson.dumps(orjson.loads(r.value),  # type: ignore[union-attr, arg-type]
                                                option=orjson.OPT_SORT_KEYS)) for r in records)
    assert got == want


def test_fraud_demo_command_prints_alerts(kafka: KafkaCluster) -> None:
    proc = run_demo(kafka, "fraud", 300)
    assert "produced 300 sample records" in proc.stdout
    assert "card card-0007 too many payments (6 in 10 min)" in proc.stdout
    assert "card card-0021 payments from ES, NL within 5 min" in proc.stdout
