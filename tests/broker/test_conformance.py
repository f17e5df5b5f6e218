"""Broker conformance: transactional behaviour kstream relies on, checked against the real broker.

Each test would fail on an imitation broker that ignores transaction markers, the last stable
offset, producer fencing, or transactional offset commits. confluent_kafka is used directly.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest
from confluent_kafka import (
    Consumer,
    IsolationLevel,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec

from kstream.testing import KafkaCluster, wait_until

FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def txn_producer(kafka: KafkaCluster, txn_id: str | None = None, **extra: object) -> Producer:
    producer = Producer(kafka.config(**{
        "transactional.id": txn_id or f"conf-{uuid.uuid4().hex[:10]}",
        "transaction.timeout.ms": 60000, "log_level": 3, **extra}))
    producer.init_transactions(30)
    return producer


def produce_in_txn(producer: Producer, topic: str, values: list[bytes]) -> None:
    """Produce inside the open transaction and wait until the broker has every record."""
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def values(kafka: KafkaCluster, topic: str, isolation: str, min_count: int = 0) -> list[bytes]:
    records = kafka.read_topic(topic, timeout=30, isolation=isolation, min_count=min_count)
    return [r.value for r in records if r.value is not None]


def end_offsets(kafka: KafkaCluster, topic: str, isolation: IsolationLevel) -> int:
    """Partition 0's end offset: the high watermark, or the LSO under READ_COMMITTED."""
    tp = TopicPartition(topic, 0)
    futures = kafka.admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=isolation,
                                       request_timeout=20)
    return futures[tp].result(timeout=30).offset


def test_read_committed_never_sees_aborted_records(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory()
    producer = txn_producer(kafka)
    producer.begin_transaction()
    produce_in_txn(producer, topic, [b"aborted-1", b"aborted-2", b"aborted-3"])
    producer.abort_transaction(30)
    producer.begin_transaction()
    produce_in_txn(producer, topic, [b"committed"])
    producer.commit_transaction(30)

    # The aborted records were on the broker: read_uncommitted returns them ...
    assert values(kafka, topic, "read_uncommitted", min_count=4) == [
        b"aborted-1", b"aborted-2", b"aborted-3", b"committed"]
    # ... and read_committed skips them (but does reach the later committed record).
    assert values(kafka, topic, "read_committed", min_count=1) == [b"committed"]


def test_read_committed_stops_at_an_open_transaction(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory()
    first = txn_producer(kafka)
    first.begin_transaction()
    produce_in_txn(first, topic, [b"before-1", b"before-2"])
    first.commit_transaction(30)

    open_txn = txn_producer(kafka)
    open_txn.begin_transaction()
    produce_in_txn(open_txn, topic, [b"open-1", b"open-2"])
    # Committed by another producer while the transaction is open: also held back by the LSO.
    first.begin_transaction()
    produce_in_txn(first, topic, [b"after"])
    first.commit_transaction(30)

    assert values(kafka, topic, "read_uncommitted", min_count=5) == [
        b"before-1", b"before-2", b"open-1", b"open-2", b"after"]
    assert end_offsets(kafka, topic, IsolationLevel.READ_COMMITTED) == 3  # first open offset
    assert values(kafka, topic, "read_committed") == [b"before-1", b"before-2"]

    open_txn.commit_transaction(30)
    assert values(kafka, topic, "read_committed", min_count=5) == [
        b"before-1", b"before-2", b"open-1", b"open-2", b"after"]


def test_second_producer_fences_the_first(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory()
    txn_id = f"fence-{uuid.uuid4().hex[:10]}"
    zombie = txn_producer(kafka, txn_id)
    zombie.begin_transaction()
    produce_in_txn(zombie, topic, [b"zombie-1", b"zombie-2"])

    successor = txn_producer(kafka, txn_id)  # bumps the epoch and aborts the open transaction

    with pytest.raises(KafkaException) as raised:
        zombie.produce(topic, value=b"zombie-3")
        zombie.commit_transaction(30)
    err = raised.value.args[0]
    assert err.fatal() and err.code() in FENCED, err

    successor.begin_transaction()
    produce_in_txn(successor, topic, [b"successor"])
    successor.commit_transaction(30)
    assert values(kafka, topic, "read_committed", min_count=1) == [b"successor"]
    assert b"zombie-1" in values(kafka, topic, "read_uncommitted", min_count=3)


CRASHING_PRODUCER = textwrap.dedent("""
    import sys
    from confluent_kafka import Producer

    bootstrap, topic, txn_id = sys.argv[1:4]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                         "transaction.timeout.ms": 60000, "log_level": 3})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=b"killed-%d" % i)
    assert producer.flush(30) == 0
    print("FLUSHED-IN-OPEN-TRANSACTION", flush=True)
    sys.stdin.read()  # hold the transaction open until killed (or the test's pipe closes)
""")


def test_sigkilled_producer_is_aborted_by_its_successor(kafka: KafkaCluster,
                                                        topic_factory) -> None:
    topic = topic_factory()
    txn_id = f"crash-{uuid.uuid4().hex[:10]}"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PRODUCER, kafka.bootstrap_servers, topic, txn_id],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in child.stdout or []:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        try:
            line = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail("the producer subprocess did not report within 60s")
        assert line.strip() == "FLUSHED-IN-OPEN-TRANSACTION", child.stderr
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()

    # The dead producer's transaction is still open: its records pin the LSO at offset 0.
    assert end_offsets(kafka, topic, IsolationLevel.READ_UNCOMMITTED) == 5
    assert end_offsets(kafka, topic, IsolationLevel.READ_COMMITTED) == 0
    assert values(kafka, topic, "read_committed") == []

    successor = txn_producer(kafka, txn_id)  # init_transactions aborts the dangling transaction
    # The abort marker lands at offset 5, so the LSO moves past it.
    wait_until(lambda: end_offsets(kafka, topic, IsolationLevel.READ_COMMITTED) >= 6, 30,
               "the LSO to move past the aborted transaction")
    successor.begin_transaction()
    produce_in_txn(successor, topic, [b"later-1", b"later-2"])
    successor.commit_transaction(30)

    assert values(kafka, topic, "read_committed", min_count=2) == [b"later-1", b"later-2"]
    assert len(values(kafka, topic, "read_uncommitted", min_count=7)) == 7


def test_transactional_offsets_commit_with_the_transaction(kafka: KafkaCluster,
                                                           topic_factory) -> None:
    source, sink = topic_factory(), topic_factory()
    kafka.produce(source, [(None, f"in-{i}") for i in range(10)])
    group = f"conf-group-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(kafka.config(**{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed", "log_level": 3}))
    producer = txn_producer(kafka)
    try:
        consumer.subscribe([source])
        seen: list[int] = []

        def consumed(n: int) -> bool:
            for msg in consumer.consume(10, 0.2):
                assert msg.error() is None, msg.error()
                seen.append(msg.offset())
            return len(seen) >= n

        wait_until(lambda: consumed(10), 60, "the group consumer to read 10 records")
        assert seen == list(range(10))

        def send(upto: int) -> None:
            producer.begin_transaction()
            produce_in_txn(producer, sink, [f"out-{upto}".encode()])
            producer.send_offsets_to_transaction(
                [TopicPartition(source, 0, upto)], consumer.consumer_group_metadata(), 30)

        assert kafka.committed_offsets(group, source) == {0: -1001}  # nothing committed yet
        send(4)
        producer.commit_transaction(30)
        assert kafka.committed_offsets(group, source) == {0: 4}

        send(9)
        producer.abort_transaction(30)
        assert kafka.committed_offsets(group, source) == {0: 4}
        assert values(kafka, sink, "read_committed", min_count=1) == [b"out-4"]
    finally:
        consumer.close()

