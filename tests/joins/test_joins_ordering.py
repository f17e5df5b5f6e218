"""Timestamp order across a task's partitions (kstream.runtime.ordering).

The release rule alone, with fake messages; then the reason it exists, on a real broker: a
stream-stream join over two pre-filled topics with no grace. librdkafka fetches one topic's
partition far ahead of the other; without ordering stream time jumps on one side and the
other side's records are dropped as late. With it, every pair is found, each once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, TopicPartition

from kstream import App, JoinWindows, StreamBuilder
from kstream.runtime.ordering import FETCH_WAIT_CAP_S, InputOrderer, PartitionGroup
from kstream.testing import KafkaCluster, running_app
from kstream.testing._fake_clients import FakeMessage
from serdes import JsonSerde, StringSerde


def Msg(topic: str, partition: int, offset: int, ts: int,  # noqa: N802 - reads as a type
        eof: bool = False) -> FakeMessage:
    """A consumed record (the driver's fake message), or an end-of-partition event."""
    return (_Eof if eof else FakeMessage)(topic, partition, offset, None, None, ts, None)


class _Eof(FakeMessage):
    def error(self) -> KafkaError:  # type: ignore[override]
        return KafkaError(KafkaError._PARTITION_EOF)


A, B = ("a", 0), ("b", 0)


def offsets(msgs: list[Any]) -> list[tuple[str, int]]:
    return [(m.topic(), m.offset()) for m in msgs]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_release_merges_by_timestamp_and_waits_for_a_lagging_partition() -> None:
    clock = Clock()
    group = PartitionGroup([A, B], max_idle_ms=0, clock=clock)
    group.add(A, [Msg("a", 0, o, ts) for o, ts in enumerate([10, 20, 30, 40])])
    out: list[Any] = []
    group.release(out)
    assert out == []  # b has not been fetched yet and is not at its end: wait for it
    group.add(B, [Msg("b", 0, 0, 15), Msg("b", 0, 1, 35)])
    group.release(out)
    # Released while both have a head; a's 40 waits for b's next record.
    assert offsets(out) == [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1)]
    assert group.held() == {A: 3}
    group.end_reached(B)
    out.clear()
    group.release(out)
    assert offsets(out) == [("a", 3)]  # b is at its end: max_task_idle_ms 0 goes on at once
    assert group.held() == {}


def test_a_record_delivered_again_is_queued_once() -> None:
    """librdkafka can hand out records again around a pause/resume; queued twice they would be
    processed and committed twice. After a rewind (clear) the same offsets are new again."""
    group = PartitionGroup([A, B], max_idle_ms=0, clock=Clock())
    group.add(A, [Msg("a", 0, o, o) for o in (0, 1, 2)])
    group.add(A, [Msg("a", 0, o, o) for o in (1, 2, 3)])
    group.add(A, [Msg("a", 0, 2, 2)])
    assert [m.offset() for m in group.queues[A]] == [0, 1, 2, 3]
    assert group.redelivered == 3
    group.clear()
    group.add(A, [Msg("a", 0, 0, 0)])
    assert [m.offset() for m in group.queues[A]] == [0]


def test_idle_wait_and_the_fetch_wait_cap() -> None:
    clock = Clock()
    group = PartitionGroup([A, B], max_idle_ms=2_000, clock=clock)
    group.add(A, [Msg("a", 0, 0, 10)])
    group.end_reached(B)
    out: list[Any] = []
    group.release(out)
    assert out == []
    clock.now += 1.9
    group.release(out)
    assert out == []
    clock.now += 0.2
    group.release(out)
    assert offsets(out) == [("a", 0)]
    # Not at its end: waits for the fetch, but not forever.
    group2 = PartitionGroup([A, B], max_idle_ms=-1, clock=clock)
    group2.add(A, [Msg("a", 0, 0, 10)])
    out.clear()
    group2.release(out)
    assert out == []
    clock.now += FETCH_WAIT_CAP_S + 0.1
    group2.release(out)
    assert offsets(out) == [("a", 0)]


def test_orderer_passes_other_partitions_through_and_pauses_full_queues() -> None:
    paused: list[list[TopicPartition]] = []
    resumed: list[list[TopicPartition]] = []
    orderer = InputOrderer(0, 4, paused.append, resumed.append)
    orderer.assign([[A, B], [("c", 0)]])
    batch = ([Msg("c", 0, 0, 99)] + [Msg("a", 0, o, o) for o in range(6)]
             + [Msg("c", 0, 1, 98), Msg("x", 0, 0, 0, eof=True)])
    out = orderer.order(batch)
    assert offsets(out) == [("c", 0), ("c", 1)]  # single-partition task: untouched order
    assert [(tp.topic, tp.partition) for tp in paused[0]] == [A]
    assert orderer.held_offsets() == {A: 0}
    out = orderer.order([Msg("b", 0, 0, 3), Msg("b", 0, 0, 0, eof=True)])
    # Equal timestamps go by (topic, partition): a's 3 before b's 3.
    assert offsets(out) == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("a", 4),
                            ("a", 5)]
    assert [(tp.topic, tp.partition) for tp in resumed[0]] == [A]
    orderer.order([Msg("a", 0, 6, 7)])
    orderer.reset()
    assert orderer.held_offsets() == {}


RECORDS, KEYS, PARTITIONS = 20_000, 10_000, 2


def test_backlog_join_with_no_grace_finds_every_pair(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    left, right, out = (topic_factory(partitions=PARTITIONS, prefix=f"ord-{n}")
                        for n in ("left", "right", "out"))
    base = 1_700_000_000_000
    # Left record i at base + i*100 ms, right record i 30 s later: with 10k keys each left
    # record has exactly one partner within 5 minutes. Both topics are filled before start.
    kafka.produce(left, ((f"k{i % KEYS}".encode(), orjson.dumps({"id": i}), base + i * 100)
                         for i in range(RECORDS)))
    kafka.produce(right, ((f"k{i % KEYS}".encode(), orjson.dumps({"id": i}),
                           base + 30_000 + i * 100) for i in range(RECORDS)))
    b = StreamBuilder()
    ls = b.stream(left, StringSerde(), JsonSerde())
    rs = b.stream(right, StringSerde(), JsonSerde())
    (ls.join(rs, lambda lv, rv: [lv["id"], rv["id"]], JoinWindows(300_000, 300_000, grace=0),
             "ordered")
     .to(out, StringSerde(), JsonSerde()))
    app = App(b, application_id=kafka.unique_name("ordered"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path, buffered_records_per_partition=500, batch_size=2_000,
              timestamp_ordering=True)
    with running_app(app):
        records = kafka.read_topic(out, min_count=RECORDS, timeout=120)
    pairs = Counter(tuple(orjson.loads(r.value)) for r in records)  # type: ignore[arg-type]
    twice = {pair for pair, n in pairs.items() if n > 1}
    # Where a pair came from twice (offsets) and what the engine went through, if it did.
    assert not twice, ([(orjson.loads(r.value), r.partition, r.offset) for r in records
                        if tuple(orjson.loads(r.value)) in twice][:12], app.stats)
    assert sum(pairs.values()) == RECORDS
    assert set(pairs) == {(i, i) for i in range(RECORDS)}
    assert app.stats["late_records"] == 0
