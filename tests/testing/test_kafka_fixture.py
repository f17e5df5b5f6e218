"""The `kafka` fixture's helpers work against the real session broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from kstream.testing import KafkaCluster, wait_until


def test_create_topic_with_partitions(kafka: KafkaCluster) -> None:
    name = kafka.create_topic(partitions=3, config={"cleanup.policy": "compact"})
    try:
        md = kafka.admin.list_topics(name, timeout=10).topics[name]
        assert sorted(md.partitions) == [0, 1, 2]
        assert all(p.leader >= 0 for p in md.partitions.values())
    finally:
        kafka.delete_topics([name])
    wait_until(lambda: name not in kafka.admin.list_topics(timeout=10).topics, 30,
               f"{name} to be deleted")


def test_produce_then_read_topic(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory(partitions=3)
    for partition in range(3):
        count = kafka.produce(topic, [(f"k{partition}", f"v{partition}-{i}") for i in range(4)],
                              partition=partition, timestamp=1_700_000_000_000 + partition)
        assert count == 4
    records = kafka.read_topic(topic, min_count=12, timeout=30)
    assert len(records) == 12
    for partition in range(3):
        mine = [r for r in records if r.partition == partition]
        assert [r.offset for r in mine] == [0, 1, 2, 3]
        assert [r.value for r in mine] == [f"v{partition}-{i}".encode() for i in range(4)]
        assert {r.key for r in mine} == {f"k{partition}".encode()}
        assert {r.timestamp for r in mine} == {1_700_000_000_000 + partition}


def test_read_topic_of_empty_topic_returns_at_once(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory(partitions=2)
    start = time.monotonic()
    assert kafka.read_topic(topic, timeout=30) == []
    assert time.monotonic() - start < 20  # returned at the partitions' ends, not the deadline


def test_read_topic_min_count_timeout_raises(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory()
    kafka.produce(topic, [(None, b"only-one")])
    with pytest.raises(TimeoutError, match=r"1 records \(wanted 2\)"):
        kafka.read_topic(topic, min_count=2, timeout=2)


def test_read_topic_waits_for_late_records(kafka: KafkaCluster, topic_factory) -> None:
    """min_count keeps reading past the current end: records produced meanwhile arrive."""
    topic = topic_factory()
    kafka.produce(topic, [(None, b"first")])
    reader = kafka.iter_topic(topic, timeout=30, isolation="read_committed", min_count=2)
    assert next(reader).value == b"first"
    kafka.produce(topic, [(None, b"second")])
    assert next(reader).value == b"second"
    reader.close()


def test_read_topic_isolation(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory()
    producer = Producer(kafka.config(**{"transactional.id": f"fx-{uuid.uuid4().hex[:8]}",
                                        "log_level": 3}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"pending")
    assert producer.flush(30) == 0
    assert kafka.read_topic(topic, timeout=30) == []  # read_committed is the default
    assert [r.value for r in kafka.read_topic(topic, isolation="read_uncommitted",
                                              min_count=1)] == [b"pending"]
    producer.abort_transaction(30)


def test_committed_offsets(kafka: KafkaCluster, topic_factory) -> None:
    topic = topic_factory(partitions=2)
    group = f"fx-group-{uuid.uuid4().hex[:8]}"
    assert kafka.committed_offsets(group, topic) == {0: -1001, 1: -1001}
    consumer = Consumer(kafka.config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(topic, 1, 7)], asynchronous=False)
    finally:
        consumer.close()
    assert kafka.committed_offsets(group, topic) == {0: -1001, 1: 7}


def test_wait_until() -> None:
    calls: list[int] = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3 and "done", 5, "three") == "done"
    with pytest.raises(TimeoutError, match="timed out after 0.2s waiting for never"):
        wait_until(lambda: False, 0.2, "never")
