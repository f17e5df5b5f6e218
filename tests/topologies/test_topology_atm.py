"""atm: exact final totals, sessions, alerts and location-enriched withdrawals in the driver
(out-of-order and late withdrawals, table updates and deletes, unknown ATMs), the same results on
the real broker, and `kstream demo atm`."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from topology_helpers import produce_like_driver, run_demo

from kstream import App
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from kstream.testing.driver import partition_for_key
from serdes import JsonSerde, StringSerde
from topologies import atm

T = 1_700_000_400_000  # a multiple of 10 minutes: windows start at T, T + 10 min, ...
M = 60_000
OUTPUTS = atm.DEMO.outputs
WINDOWED = {t: serdes for t, serdes in OUTPUTS.items() if t != atm.ENRICHED}
PARTITIONS = {atm.INPUT: 3, atm.LOCATIONS: 3}


def w(card: str, where: str, amount: int, ts: int) -> tuple[str, dict[str, Any]]:
    return card, {"card": card, "atm": where, "amount": amount, "ts": T + ts}


def window(card: str, start: int, end: int, **agg: Any) -> dict[str, Any]:
    return {"card": card, "start": T + start, "end": T + end, **agg}


def test_atm_totals_sessions_and_alerts_in_the_driver() -> None:
    steps = [
        w("a", "atm-1", 100, 1 * M),
        w("a", "atm-2", 600, 4 * M),              # large: alert at once
        w("b", "atm-3", 200, 5 * M),
        w("b", "atm-3", 40, 10 * M + 30_000),     # closes a's session [1, 4] (4 + 5 + 1 min)
        w("a", "atm-1", 30, 9 * M + 45_000),      # out of order, within the 1-minute grace
        w("a", "atm-1", 50, 12 * M),              # closes the [0, 10) windows (10 + 1 min)
        w("b", "atm-4", 20, 9 * M + 30_000),      # late for its window and for any session
        w("z", "atm-0", 0, 60 * M),               # flush: everything else closes
    ]
    seen: list[tuple[int, str, Any, Any, float]] = []
    with TopologyTestDriver(atm.build()) as driver:
        pipe = driver.input_topic(atm.INPUT, StringSerde(), JsonSerde())
        readers = {t: driver.output_topic(t, *serdes) for t, serdes in WINDOWED.items()}
        for step, (card, value) in enumerate(steps):
            pipe.pipe(card, value)
            for topic, reader in readers.items():
                for r in reader.read_records_to_list():
                    key = r.key if topic == atm.ALERTS else (r.key.key, r.key.start - T)
                    seen.append((step, topic, key, r.value, r.timestamp - T))
        late = sum(task.dropped_late for task in driver._tasks.values())
    assert seen == [
        (1, atm.ALERTS, "a", {"card": "a", "reason": "large_withdrawal", "atm": "atm-2",
                              "amount": 600, "ts": T + 4 * M}, 4 * M),
        (3, atm.SESSIONS, ("a", 1 * M),
         window("a", 1 * M, 4 * M, count=2, total=700, atms=["atm-1", "atm-2"]), 4 * M),
        (5, atm.TOTALS, ("a", 0), window("a", 0, 10 * M, count=3, total=730), 10 * M - 1),
        (5, atm.TOTALS, ("b", 0), window("b", 0, 10 * M, count=1, total=200), 10 * M - 1),
        (5, atm.SESSIONS, ("b", 5 * M),
         window("b", 5 * M, 5 * M, count=1, total=200, atms=["atm-3"]), 5 * M),
        (7, atm.TOTALS, ("a", 10 * M), window("a", 10 * M, 20 * M, count=1, total=50),
         20 * M - 1),
        (7, atm.TOTALS, ("b", 10 * M), window("b", 10 * M, 20 * M, count=1, total=40),
         20 * M - 1),
        (7, atm.SESSIONS, ("b", 10 * M + 30_000),
         window("b", 10 * M + 30_000, 10 * M + 30_000, count=1, total=40, atms=["atm-3"]),
         10 * M + 30_000),
        (7, atm.SESSIONS, ("a", 9 * M + 45_000),
         window("a", 9 * M + 45_000, 12 * M, count=2, total=80, atms=["atm-1"]), 12 * M),
    ]
    assert late == 2  # b's 9:30 withdrawal, by the totals and by the sessions


def located(card: str, where: str, amount: int, ts: int, branch: str | None = None,
            city: str | None = None) -> dict[str, Any]:
    return {"card": card, "atm": where, "amount": amount, "ts": T + ts, "branch": branch,
            "city": city}


def test_atm_enriched_withdrawals_in_the_driver() -> None:
    """The stream-table left join: each withdrawal with the locations table's value for its ATM
    when it is processed, whatever its event time; unknown or removed ATMs give nulls."""
    steps: list[tuple[str, str, Any, int]] = [
        (atm.LOCATIONS, "atm-1", {"atm": "atm-1", "branch": "Zeil", "city": "Frankfurt"}, 0),
        (atm.LOCATIONS, "atm-2", {"atm": "atm-2", "branch": "Dom", "city": "Cologne"}, 0),
        (atm.INPUT, *w("a", "atm-1", 100, 1 * M), 0),
        (atm.INPUT, *w("b", "atm-3", 200, 2 * M), 0),          # not in the table
        (atm.LOCATIONS, "atm-1", {"atm": "atm-1", "branch": "Hauptwache", "city": "Frankfurt"},
         T + 3 * M),                                          # atm-1 moves
        (atm.INPUT, *w("a", "atm-1", 50, 2 * M + 30_000), 0),  # out of order: the new value
        (atm.LOCATIONS, "atm-2", None, T + 4 * M),            # atm-2 removed
        (atm.INPUT, *w("c", "atm-2", 40, 5 * M), 0),
        (atm.INPUT, *w("z", "atm-0", 0, 60 * M), 0),           # flush
        (atm.INPUT, *w("d", "atm-1", 20, 9 * M), 0),           # late for its windows, not here
    ]
    with TopologyTestDriver(atm.build()) as driver:
        pipes = {t: driver.input_topic(t, StringSerde(), JsonSerde())
                 for t in (atm.INPUT, atm.LOCATIONS)}
        for topic, key, value, ts in steps:
            pipes[topic].pipe(key, value, ts or None)  # withdrawals: time from value["ts"]
        records = driver.output_topic(atm.ENRICHED, StringSerde(),
                                      JsonSerde()).read_records_to_list()
        late = sum(task.dropped_late for task in driver._tasks.values())
    assert [(r.key, r.value, r.timestamp - T) for r in records] == [
        ("atm-1", located("a", "atm-1", 100, 1 * M, "Zeil", "Frankfurt"), 1 * M),
        ("atm-3", located("b", "atm-3", 200, 2 * M), 2 * M),
        ("atm-1", located("a", "atm-1", 50, 2 * M + 30_000, "Hauptwache", "Frankfurt"),
         2 * M + 30_000),
        ("atm-2", located("c", "atm-2", 40, 5 * M), 5 * M),
        ("atm-0", located("z", "atm-0", 0, 60 * M), 60 * M),
        ("atm-1", located("d", "atm-1", 20, 9 * M, "Hauptwache", "Frankfurt"), 9 * M),
    ]
    assert late == 2  # d's withdrawal, by the totals and by the sessions


def test_atm_generated_sample_closes_every_window_in_the_driver() -> None:
    sample = atm.generate(300)
    assert len(sample) == 300
    sites = [r for r in sample if r[0] == atm.LOCATIONS]
    assert [r[1] for r in sites] == [f"atm-{i:02d}" for i in range(1, 12)]
    counted = len(sample) - len(sites) - len(atm.FLUSH_CARDS)
    with TopologyTestDriver(atm.build(), partitions=PARTITIONS) as driver:
        pipes = {t: driver.input_topic(t, StringSerde(), JsonSerde()) for t in PARTITIONS}
        for topic, key, value, ts in sample:
            pipes[topic].pipe(key, value, ts)
        outs = {t: driver.output_topic(t, *s).read_values_to_list() for t, s in OUTPUTS.items()}
        late = sum(task.dropped_late for task in driver._tasks.values())
    assert late == 0
    assert sum(t["count"] for t in outs[atm.TOTALS]) == counted
    assert sum(s["count"] for s in outs[atm.SESSIONS]) == counted
    withdrawals = [v for topic, _, v, _ in sample if topic == atm.INPUT]
    assert len(outs[atm.ALERTS]) == sum(1 for v in withdrawals if v["amount"] >= 500)
    assert sorted(e["ts"] for e in outs[atm.ENRICHED]) == sorted(v["ts"] for v in withdrawals)
    assert {e["atm"] for e in outs[atm.ENRICHED] if e["city"] is None} == {"atm-00", "atm-12"}


def test_atm_flush_cards_reach_every_partition() -> None:
    """Murmur2 (kstream, Java clients, the driver) and CRC32 (librdkafka's default, used by
    `kstream demo`) both put a flush record on each partition of 1-4 partition topics."""
    for partitions in range(1, 5):
        keys = [card.encode() for card in atm.FLUSH_CARDS]
        assert {partition_for_key(k, partitions) for k in keys} == set(range(partitions))
        assert {zlib.crc32(k) % partitions for k in keys} == set(range(partitions))


def _canonical(key: Any, value: Any) -> tuple[Any, bytes]:
    return tuple(key) if isinstance(key, tuple) else key, orjson.dumps(
        value, option=orjson.OPT_SORT_KEYS)


def test_atm_on_kafka_matches_the_in_process_run(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    """The locations table is read before any withdrawal arrives (as in the driver, where it
    is piped first); then every output equals the driver's, each record exactly once."""
    sample = atm.generate(400)
    sites = [r for r in sample if r[0] == atm.LOCATIONS]
    withdrawals = [r for r in sample if r[0] == atm.INPUT]
    want: dict[str, Counter[tuple[Any, bytes]]] = {}
    with TopologyTestDriver(atm.build(), partitions=PARTITIONS) as driver:
        pipes = {t: driver.input_topic(t, StringSerde(), JsonSerde()) for t in PARTITIONS}
        for topic, key, value, ts in sites + withdrawals:
            pipes[topic].pipe(key, value, ts)
        for topic, serdes in OUTPUTS.items():
            want[topic] = Counter(_canonical(r.key, r.value) for r in
                                  driver.output_topic(topic, *serdes).read_records_to_list())
    assert sum(want[atm.ENRICHED].values()) == len(withdrawals)

    inputs = {topic: topic_factory(partitions=3, prefix=topic) for topic in PARTITIONS}
    outs = {topic: topic_factory(partitions=3, prefix=topic) for topic in OUTPUTS}
    app = App(atm.build(*inputs.values(), *outs.values()), application_id=kafka.unique_name("atm"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app) as run:
        produce_like_driver(kafka, inputs[atm.LOCATIONS], 3, sites)
        wait_until(lambda: run.error or app.stats.get("records_in", 0) >= len(sites), 60,
                   "the app to read the locations table")
        assert run.error is None
        produce_like_driver(kafka, inputs[atm.INPUT], 3, withdrawals)
        for topic in OUTPUTS:
            kafka.read_topic(outs[topic], min_count=sum(want[topic].values()), timeout=90)
    # Read again once the app has stopped: nothing more can come, so equal multisets mean no
    # duplicates and no losses.
    for topic, (key_serde, value_serde) in OUTPUTS.items():
        got = Counter(_canonical(key_serde.deserialize(r.key), value_serde.deserialize(r.value))
                      for r in kafka.read_topic(outs[topic], timeout=60))
        assert got == want[topic], topic


def test_atm_demo_command_prints_results(kafka: KafkaCluster) -> None:
    proc = run_demo(kafka, "atm", 300)
    assert "produced 300 sample records" in proc.stdout
    # every window and session closed: all 281 withdrawals (300 - 11 locations - 8 flush)
    assert "final 10-minute totals covering 281 withdrawals" in proc.stdout
    assert "card sessions covering 281 withdrawals" in proc.stdout
    assert "large-withdrawal alerts" in proc.stdout
    # every withdrawal enriched; those at atm-12 and the flush records' atm-00 without a city
    assert "289 withdrawals enriched with their ATM's location; per city:" in proc.stdout
    unknown = sum(1 for _, _, v, _ in atm.generate(300) if v["atm"] in ("atm-00", "atm-12"))
    assert f"missing from the locations table (atm-00, atm-12): {unknown}" in proc.stdout
