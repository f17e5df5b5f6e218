"""A store's changelog records go out in one call per commit (KafkaRecordCollector.
send_changelogs): in a transaction only the last record reports its delivery (its offset is
the highest; a failed record fails the transaction anyway), outside one every record does."""

from __future__ import annotations

from typing import Any, cast

from confluent_kafka import Producer

from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.stats import EngineStats
from kstream.state.changelog import ChangeloggingLayer
from kstream.state.memory import MemoryBackend
from kstream.testing._fake_clients import COMMITTED, FakeKafka, FakeProducer

ENTRIES: list[tuple[bytes, bytes | None]] = [(b"a", b"1"), (b"b", None), (b"c", b"3")]


def _collector(transactional: bool) -> tuple[KafkaRecordCollector, FakeProducer, FakeKafka]:
    kafka = FakeKafka(lambda topic: 2)
    producer = FakeProducer(kafka, "tid" if transactional else None)
    if transactional:
        producer.init_transactions()
        producer.begin_transaction()
    collector = KafkaRecordCollector(cast(Producer, producer), EngineStats(),
                                     kafka.partition_count, transactional=transactional)
    return collector, producer, kafka


def test_in_a_transaction_only_the_last_record_reports() -> None:
    collector, producer, kafka = _collector(transactional=True)
    reports: list[tuple[Any, int]] = []
    collector.send_changelogs("log", 1, ENTRIES, 7,
                              lambda err, msg: reports.append((err, msg.offset())))
    producer.commit_transaction()
    producer.flush()
    assert [(m.key(), m.value(), m.timestamp()[1], m.state) for m in kafka.read("log", 1)] == [
        (b"a", b"1", 7, COMMITTED), (b"b", None, 7, COMMITTED), (b"c", b"3", 7, COMMITTED)]
    assert reports == [(None, 2)]  # one report, the highest offset


def test_outside_a_transaction_every_record_reports() -> None:
    collector, producer, _ = _collector(transactional=False)
    reports: list[int] = []
    collector.send_changelogs("log", 0, ENTRIES, 7, lambda err, msg: reports.append(msg.offset()))
    producer.flush()
    assert reports == [0, 1, 2]


def test_the_changelog_layer_learns_the_last_offset_and_applies_with_it() -> None:
    collector, producer, _ = _collector(transactional=True)
    backend = MemoryBackend()
    layer = ChangeloggingLayer(backend, "store", "log", 0)
    layer.send(list(ENTRIES), collector)
    layer.send([(b"d", b"4")], collector)  # a second send in the same commit: offset 3
    producer.commit_transaction()
    producer.flush()
    layer.apply(list(ENTRIES) + [(b"d", b"4")])
    assert backend.committed_offset == 3
    assert [k for k, _ in backend.range(None, None)] == [b"a", b"c", b"d"]
