"""atm: exact final totals, sessions and alerts in the driver (out-of-order and late
withdrawals), the same results on the real broker, and `kstream demo atm`."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from topology_helpers import produce_like_driver, run_demo

from kstream import App
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from kstream.testing.driver import partition_for_key
from serdes import JsonSerde, StringSerde
from topologies import atm

T = 1_700_000_400_000  # a multiple of 10 minutes: windows start at T, T + 10 min, ...
M = 60_000
OUTPUTS = atm.DEMO.outputs


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
        readers = {t: driver.output_topic(t, *serdes) for t, serdes in OUTPUTS.items()}
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


def test_atm_generated_sample_closes_every_window_in_the_driver() -> None:
    sample = atm.generate(300)
    assert len(sample) == 300
    counted = len(sample) - len(atm.FLUSH_CARDS)
    with TopologyTestDriver(atm.build(), partitions={atm.INPUT: 3}) as driver:
        pipe = driver.input_topic(atm.INPUT, StringSerde(), JsonSerde())
        for _, card, value, ts in sample:
            pipe.pipe(card, value, ts)
        outs = {t: driver.output_topic(t, *s).read_values_to_list() for t, s in OUTPUTS.items()}
        late = sum(task.dropped_late for task in driver._tasks.values())
    assert late == 0
    assert sum(t["count"] for t in outs[atm.TOTALS]) == counted
    assert sum(s["count"] for s in outs[atm.SESSIONS]) == counted
    assert len(outs[atm.ALERTS]) == sum(1 for _, _, v, _ in sample if v["amount"] >= 500)


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
    sample = atm.generate(400)
    want: dict[str, Counter[tuple[Any, bytes]]] = {}
    with TopologyTestDriver(atm.build(), partitions={atm.INPUT: 3}) as driver:
        pipe = driver.input_topic(atm.INPUT, StringSerde(), JsonSerde())
        for _, card, value, ts in sample:
            pipe.pipe(card, value, ts)
        for topic, serdes in OUTPUTS.items():
            want[topic] = Counter(_canonical(r.key, r.value) for r in
                                  driver.output_topic(topic, *serdes).read_records_to_list())

    inp = topic_factory(partitions=3)
    outs = {topic: topic_factory(partitions=3) for topic in OUTPUTS}
    produce_like_driver(kafka, inp, 3, sample)
    app = App(atm.build(inp, *outs.values()), application_id=kafka.unique_name("atm"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        read = {topic: kafka.read_topic(outs[topic], min_count=sum(want[topic].values()),
                                        timeout=90) for topic in OUTPUTS}
    for topic, (key_serde, value_serde) in OUTPUTS.items():
        got = Counter(_canonical(key_serde.deserialize(r.key), value_serde.deserialize(r.value))
                      for r in read[topic])
        assert got == want[topic], topic


def test_atm_demo_command_prints_results(kafka: KafkaCluster) -> None:
    proc = run_demo(kafka, "atm", 300)
    assert "produced 300 sample records" in proc.stdout
    # every window and session closed: all 292 withdrawals (300 - 8 flush) are in the results
    assert "final 10-minute totals covering 292 withdrawals" in proc.stdout
    assert "card sessions covering 292 withdrawals" in proc.stdout
    assert "large-withdrawal alerts" in proc.stdout
