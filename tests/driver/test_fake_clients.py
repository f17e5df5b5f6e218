"""The in-memory producer and consumer behind the TopologyTestDriver: transactions, offsets,
delivery reports, fencing and injected failures, against the production committers."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as TP

from kstream.errors import AbortableError, FatalError, ProducerFencedError, kafka_failure
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.commit import ExactlyOnce, make_committer
from kstream.runtime.stats import EngineStats
from kstream.testing._fake_clients import (
    ABORTED,
    COMMITTED,
    PENDING,
    FakeConsumer,
    FakeKafka,
    FakeMessage,
    FakeProducer,
    partition_for_key,
)

PARTITIONS = {"out": 3, "in": 2}


def _kafka() -> FakeKafka:
    return FakeKafka(lambda topic: PARTITIONS.get(topic, 1))


def _values(msgs: list[FakeMessage]) -> list[bytes | None]:
    return [m.value() for m in msgs]


def test_transaction_commit_makes_records_and_offsets_visible_together() -> None:
    kafka = _kafka()
    seen: list[list[FakeMessage]] = []
    kafka.on_visible.append(seen.append)
    producer = FakeProducer(kafka, "tid")
    consumer = FakeConsumer(kafka, "group")
    producer.init_transactions(5)
    producer.begin_transaction()
    producer.produce("out", b"v1", b"k", 0)
    producer.produce("out", b"v2", b"k", 0)
    producer.send_offsets_to_transaction([TP("in", 1, 7)], consumer.consumer_group_metadata(),
                                         5)
    assert kafka.read("out", 0) == []  # read_committed: stops at the first pending record
    assert [m.state for m in kafka.read("out", 0, "read_uncommitted")] == [PENDING, PENDING]
    assert kafka.committed_offsets("group", "in") == {0: OFFSET_INVALID, 1: OFFSET_INVALID}
    assert seen == []
    producer.commit_transaction(5)
    assert _values(kafka.read("out", 0)) == [b"v1", b"v2"]
    assert kafka.committed_offsets("group", "in") == {0: OFFSET_INVALID, 1: 7}
    assert [_values(batch) for batch in seen] == [[b"v1", b"v2"]]


def test_abort_keeps_offsets_hides_records_and_drops_their_offsets() -> None:
    kafka = _kafka()
    producer = FakeProducer(kafka, "tid")
    consumer = FakeConsumer(kafka, "group")
    reports: list[tuple[Any, int]] = []
    producer.init_transactions()
    producer.begin_transaction()
    producer.produce("out", b"gone", None, 0, lambda err, msg: reports.append((err, msg.offset())))
    producer.send_offsets_to_transaction([TP("in", 0, 3)], consumer.consumer_group_metadata())
    producer.abort_transaction()
    assert reports == []  # an unreported record of a void transaction is never reported
    producer.poll(0)
    assert reports == []
    producer.begin_transaction()
    producer.produce("out", b"kept", None, 0, lambda err, msg: reports.append((err, msg.offset())))
    producer.commit_transaction()
    producer.poll(0)
    assert reports == [(None, 1)]  # the aborted record keeps offset 0, as on a broker
    assert [(m.offset(), m.state) for m in kafka.read("out", 0, "read_uncommitted")] == [
        (0, ABORTED), (1, COMMITTED)]
    assert _values(kafka.read("out", 0)) == [b"kept"]
    assert consumer.committed([TP("in", 0)])[0].offset == OFFSET_INVALID


def test_a_pending_transaction_hides_what_follows_it_from_read_committed() -> None:
    kafka = _kafka()
    plain = FakeProducer(kafka)  # not transactional: committed at once
    txn = FakeProducer(kafka, "tid")
    txn.init_transactions()
    txn.begin_transaction()
    txn.produce("out", b"open", None, 0)
    plain.produce("out", b"after", None, 0)
    assert kafka.read("out", 0) == []  # the last stable offset is the open record's
    txn.abort_transaction()
    assert _values(kafka.read("out", 0)) == [b"after"]


def test_transactional_calls_out_of_order_fail_like_librdkafka() -> None:
    producer = FakeProducer(_kafka(), "tid")
    with pytest.raises(KafkaException) as info:
        producer.begin_transaction()  # before init_transactions
    assert info.value.args[0].code() == KafkaError._STATE
    producer.init_transactions()
    with pytest.raises(KafkaException, match="outside a transaction"):
        producer.produce("out", b"v")
    with pytest.raises(KafkaException, match="outside a transaction"):
        producer.commit_transaction()
    producer.begin_transaction()
    with pytest.raises(KafkaException):
        producer.begin_transaction()


def test_init_transactions_fences_the_previous_owner_and_aborts_its_transaction() -> None:
    kafka = _kafka()
    old = FakeProducer(kafka, "tid")
    old.init_transactions()
    old.begin_transaction()
    old.produce("out", b"zombie", None, 1)
    new = FakeProducer(kafka, "tid")
    new.init_transactions()
    assert [m.state for m in kafka.read("out", 1, "read_uncommitted")] == [ABORTED]
    with pytest.raises(KafkaException) as info:
        old.commit_transaction()
    assert isinstance(kafka_failure(info.value, "commit"), ProducerFencedError)
    with pytest.raises(KafkaException):
        old.produce("out", b"again")


def test_partitioner_and_unknown_partitions() -> None:
    kafka = _kafka()
    producer = FakeProducer(kafka)
    producer.produce("out", b"v", b"21")
    for _ in range(4):
        producer.produce("out", b"n", None)
    keyed = partition_for_key(b"21", 3)
    assert _values(kafka.read("out", keyed))[0] == b"v"
    nulls = [p for p in range(3) for m in kafka.read("out", p) if m.value() == b"n"]
    assert sorted(nulls) == [0, 0, 1, 2]  # round robin from 0
    with pytest.raises(KafkaException) as info:
        producer.produce("out", b"v", None, 3)
    assert info.value.args[0].code() == KafkaError._UNKNOWN_PARTITION


def test_delivery_reports_run_at_poll_and_flush_with_offsets() -> None:
    kafka = _kafka()
    default: list[int] = []
    producer = FakeProducer(kafka, on_delivery=lambda err, msg: default.append(msg.offset()))
    own: list[int] = []
    producer.produce("out", b"a", None, 2)
    producer.produce("out", b"b", None, 2, lambda err, msg: own.append(msg.offset()))
    assert (default, own, len(producer)) == ([], [], 2)
    assert producer.poll(0) == 2
    assert (default, own) == ([0], [1])
    producer.produce("out", b"c", None, 2)
    assert producer.flush(1) == 0 and default == [0, 2]


def test_consumer_positions_and_offset_commits() -> None:
    kafka = _kafka()
    consumer = FakeConsumer(kafka, "g")
    assert consumer.position([TP("in", 0)])[0].offset == OFFSET_INVALID
    consumer.consumed(FakeMessage("in", 0, 4, None, None, 0, None))
    assert consumer.position([TP("in", 0)])[0].offset == 5
    consumer.commit(offsets=[TP("in", 0, 5, metadata='{"st": 9}')], asynchronous=False)
    got = consumer.committed([TP("in", 0), TP("in", 1)])
    assert [(tp.offset, tp.metadata) for tp in got] == [(5, '{"st": 9}'), (OFFSET_INVALID, None)]
    consumer.seek(TP("in", 0, 2))
    assert consumer.position([TP("in", 0)])[0].offset == 2


def _eos(kafka: FakeKafka) -> tuple[ExactlyOnce, FakeProducer]:
    producer = FakeProducer(kafka, "tid")
    consumer = FakeConsumer(kafka, "app")
    collector = KafkaRecordCollector(cast(Producer, producer), EngineStats(),
                                     kafka.partition_count)
    committer = make_committer("exactly_once", cast(Consumer, consumer),
                               cast(Producer, producer), collector, EngineStats(), 0.5)
    assert isinstance(committer, ExactlyOnce)
    return committer, producer


def test_production_committer_over_the_fakes_retries_and_classifies_injected_errors() -> None:
    kafka = _kafka()
    committer, producer = _eos(kafka)
    # Retriable: init_transactions is repeated (kstream.runtime.commit._call).
    kafka.faults.fail("init_transactions", KafkaError(KafkaError._TIMED_OUT, retriable=True))
    committer.start()
    assert kafka.faults.calls["init_transactions"] == 2 and not kafka.faults.pending
    committer.before_batch([])
    committer.collector.send("out", b"k", b"v", 1, None)
    committer.commit([], [TP("in", 0, 1)])
    partition = partition_for_key(b"k", 3)
    assert _values(kafka.read("out", partition)) == [b"v"]
    assert kafka.committed_offsets("app", "in")[0] == 1
    # Abortable: the engine (and the driver) abort and rewind.
    kafka.faults.fail("send_offsets_to_transaction",
                      KafkaError(KafkaError._STATE, txn_requires_abort=True))
    committer.before_batch([])
    committer.collector.send("out", b"k", b"w", 2, None)
    with pytest.raises(AbortableError) as info:
        committer.commit([], [TP("in", 0, 2)])
    assert not info.value.producer_unusable
    committer.abort([], after_error=True)
    assert kafka.committed_offsets("app", "in")[0] == 1
    assert _values(kafka.read("out", partition)) == [b"v"]
    # A transaction-ending call that timed out is not resumed: the producer is replaced.
    kafka.faults.fail("commit_transaction", KafkaError(KafkaError._TIMED_OUT, retriable=True))
    committer.before_batch([])
    with pytest.raises(AbortableError) as info:
        committer.commit([], [TP("in", 0, 2)])
    assert info.value.producer_unusable
    successor = FakeProducer(kafka, "tid")
    committer.replace_clients(committer.consumer, cast(Producer, successor))
    committer.start()  # fences `producer`, aborting its open transaction
    with pytest.raises(KafkaException):
        producer.begin_transaction()
    # Fatal: stop, naming the call.
    kafka.faults.fail("begin_transaction",
                      KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))
    with pytest.raises(FatalError, match="begin_transaction"):
        committer.before_batch([])


def test_an_injected_exception_is_raised_as_given() -> None:
    kafka = _kafka()
    kafka.faults.fail("produce", BufferError("queue full"), times=2)
    producer = FakeProducer(kafka)
    collector = KafkaRecordCollector(cast(Producer, producer), EngineStats(),
                                     kafka.partition_count)
    collector.send("out", None, b"v", 1, None, 0)  # the collector waits for room, then sends
    assert kafka.faults.calls["produce"] == 3
    assert _values(kafka.read("out", 0)) == [b"v"]
