"""Changelog round trips against the real broker: commit, wipe, restore, heal, refuse.

Each test plays the Task's part: prepare_commit (step 3), the producer flush or transaction
commit (steps 4-5), after_commit (step 6).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from state_helpers import ProducerCollector

from kstream.state import (
    ChangelogWriteError,
    KeyValueStore,
    StateCorruptedError,
    StateRestoreError,
    kv_store,
    restore_stores,
)
from kstream.testing import KafkaCluster, wait_until
from serdes import encode_key

TIMEOUT = 60.0


def build(topic: str, root: Path, backend: str = "rocksdb", name: str = "counts",
          logging_on: bool = True) -> KeyValueStore:
    return kv_store(name, backend=backend, logging=logging_on).build(  # type: ignore[arg-type]
        root / "0_0", 0, topic)


def commit(store: KeyValueStore, collector: ProducerCollector) -> None:
    store.prepare_commit(collector)
    collector.flush()
    store.after_commit()


def fill(store: KeyValueStore, first: int, count: int) -> None:
    for i in range(first, first + count):
        store.put((f"user{i % 17}", i), {"n": i})
    for i in range(first, first + count, 5):
        store.delete((f"user{i % 17}", i))
    store.put(("user0", first), {"n": "overwritten"})


def changelog(topic_factory: Any) -> str:
    return topic_factory(1, "changelog", {"cleanup.policy": "compact"})


@pytest.mark.parametrize("backend", ["rocksdb", "memory"])
def test_round_trip_through_the_changelog(kafka: KafkaCluster, topic_factory: Any,
                                          state_dir: Path, backend: str) -> None:
    topic = changelog(topic_factory)
    collector = ProducerCollector(kafka.bootstrap_servers)
    store = build(topic, state_dir)
    fill(store, 0, 200)
    commit(store, collector)
    fill(store, 150, 100)
    commit(store, collector)
    assert store.backend.committed_offset == collector.sent - 1
    expected = list(store.all())
    assert len(expected) > 150
    store.close()
    shutil.rmtree(state_dir / "0_0")

    fresh = build(topic, state_dir, backend)
    try:
        assert fresh.backend.committed_offset is None
        report = restore_stores(kafka.bootstrap_servers, [fresh], TIMEOUT)
        assert report.records == collector.sent
        assert report.stores[0].start_offset == 0
        assert report.stores[0].end_offset == collector.sent
        assert list(fresh.all()) == expected
        assert fresh.backend.committed_offset == collector.sent - 1
        again = restore_stores(kafka.bootstrap_servers, [fresh], TIMEOUT)  # nothing left
        assert again.records == 0
    finally:
        fresh.close()


def test_restore_replays_only_the_tail(kafka: KafkaCluster, topic_factory: Any,
                                       state_dir: Path) -> None:
    """Crash after Kafka took the changelog but before the local flush: restore heals it."""
    topic = changelog(topic_factory)
    collector = ProducerCollector(kafka.bootstrap_servers)
    store = build(topic, state_dir)
    fill(store, 0, 100)
    commit(store, collector)
    offset = store.backend.committed_offset
    first_batch = collector.sent
    fill(store, 100, 40)
    store.put(("user1", 1), {"n": "late"})
    expected = list(store.all())
    store.prepare_commit(collector)
    collector.flush()
    store.close()  # "crash": after_commit never ran

    reopened = build(topic, state_dir)
    try:
        assert reopened.backend.committed_offset == offset
        assert list(reopened.all()) != expected
        report = restore_stores(kafka.bootstrap_servers, [reopened], TIMEOUT)
        assert report.stores[0].start_offset == offset + 1
        assert report.records == collector.sent - first_batch
        assert list(reopened.all()) == expected
    finally:
        reopened.close()


@pytest.mark.parametrize("recreate_with", [0, 3])
def test_truncated_changelog_is_refused(kafka: KafkaCluster, state_dir: Path,
                                        recreate_with: int) -> None:
    topic = kafka.create_topic(kafka.unique_name("changelog"), 1, {"cleanup.policy": "compact"})
    try:
        store = build(topic, state_dir)
        fill(store, 0, 30)
        commit(store, ProducerCollector(kafka.bootstrap_servers))
        store.close()
        kafka.delete_topics([topic])
        wait_until(lambda: topic not in kafka.admin.list_topics(timeout=10).topics, 30,
                   f"{topic} to be deleted")
        kafka.create_topic(topic, 1, {"cleanup.policy": "compact"})
        if recreate_with:
            kafka.produce(topic, [(b"k%d" % i, b"v") for i in range(recreate_with)])

        reopened = build(topic, state_dir)
        try:
            with pytest.raises(StateCorruptedError) as info:
                restore_stores(kafka.bootstrap_servers, [reopened], TIMEOUT)
        finally:
            reopened.close()
        message = str(info.value)
        for part in ("'counts'", str(state_dir / "0_0"), "partition 0",
                     f"delete the store directory {state_dir / '0_0' / 'counts'}",
                     "reset the application"):
            assert part in message
    finally:
        kafka.delete_topics([topic])


def test_missing_changelog(kafka: KafkaCluster, topic_factory: Any, state_dir: Path) -> None:
    missing = kafka.unique_name("never-created")
    fresh = build(missing, state_dir, "memory")
    report = restore_stores(kafka.bootstrap_servers, [fresh], TIMEOUT)  # nothing to restore
    assert report.records == 0

    store = build(missing, state_dir)
    store.backend.write([(b"k", b"v")], 5)  # local state that claims a changelog position
    try:
        with pytest.raises(StateCorruptedError, match="does not exist"):
            restore_stores(kafka.bootstrap_servers, [store], TIMEOUT)
    finally:
        store.close()


def test_logging_disabled_sends_and_restores_nothing(kafka: KafkaCluster, topic_factory: Any,
                                                     state_dir: Path) -> None:
    topic = changelog(topic_factory)
    collector = ProducerCollector(kafka.bootstrap_servers)
    store = build(topic, state_dir, logging_on=False)
    try:
        fill(store, 0, 10)
        commit(store, collector)
        assert collector.sent == 0
        assert kafka.read_topic(topic, timeout=TIMEOUT) == []
        assert len(list(store.all())) == 9  # 10 puts, 2 deletes, 1 re-put
        assert restore_stores(kafka.bootstrap_servers, [store], TIMEOUT).stores == []
    finally:
        store.close()


def test_exactly_once_aborted_writes_never_reach_any_store(
        kafka: KafkaCluster, topic_factory: Any, state_dir: Path) -> None:
    topic = changelog(topic_factory)
    collector = ProducerCollector(kafka.bootstrap_servers, kafka.unique_name("txn"))
    producer = collector.producer
    store = build(topic, state_dir)
    try:
        producer.begin_transaction()
        fill(store, 0, 50)
        store.prepare_commit(collector)
        producer.commit_transaction(30)
        producer.poll(0)
        store.after_commit()
        committed = list(store.all())

        producer.begin_transaction()
        store.put(("user0", 0), {"n": "aborted"})
        store.delete(("user1", 1))
        store.prepare_commit(collector)
        producer.abort_transaction(30)
        store.discard_uncommitted()
        assert list(store.all()) == committed
        store.after_commit()  # a later commit with nothing buffered changes nothing
        assert list(store.all()) == committed
    finally:
        store.close()

    fresh = build(topic, state_dir / "other", "memory")
    try:
        restore_stores(kafka.bootstrap_servers, [fresh], TIMEOUT)
        assert list(fresh.all()) == committed
    finally:
        fresh.close()


def test_rejected_changelog_records_are_not_applied(kafka: KafkaCluster, topic_factory: Any,
                                                    state_dir: Path) -> None:
    topic = topic_factory(1, "changelog", {"cleanup.policy": "compact",
                                           "max.message.bytes": "200"})
    collector = ProducerCollector(kafka.bootstrap_servers, **{"enable.idempotence": False})
    store = build(topic, state_dir)
    try:
        store.put("big", "x" * 5000)
        store.prepare_commit(collector)
        collector.flush()
        with pytest.raises(ChangelogWriteError, match="rejected"):
            store.after_commit()
        assert store.backend.get(encode_key("big")) is None
        assert store.get("big") is None  # the buffer is gone too
    finally:
        store.close()


def test_restore_many_batches_and_several_stores(kafka: KafkaCluster, topic_factory: Any,
                                                 state_dir: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Raw changelog records over several consume batches into two stores at once."""
    topic_a, topic_b = topic_factory(2, "changelog-a"), topic_factory(1, "changelog-b")
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    n = 25_000
    for i in range(n):
        producer.produce(topic_a, b"%d" % i, encode_key(i % 3000), 1)
        if i % 5 == 0:
            producer.produce(topic_b, None if i % 10 else b"x", encode_key(i % 700), 0)
        if i % 10_000 == 0:
            producer.flush(30)
    assert producer.flush(30) == 0
    a = kv_store("a", value_serde="bytes").build(state_dir / "0_1", 1, topic_a)
    b = kv_store("b", value_serde="bytes", backend="memory").build(state_dir / "0_0", 0, topic_b)
    try:
        with caplog.at_level(logging.INFO, logger="kstream.restore"):
            report = restore_stores(kafka.bootstrap_servers, [a, b], TIMEOUT)
        assert report.records == n + n // 5
        assert a.backend.committed_offset == n - 1
        last = {i % 3000: i for i in range(n)}
        assert dict(a.all()) == {k: b"%d" % i for k, i in last.items()}
        assert dict(b.all()) == {k: b"x" for k in range(0, 700, 10)}
        assert any("restored" in r.message for r in caplog.records)
    finally:
        a.close()
        b.close()


def test_restore_gives_up_on_an_unreachable_cluster(state_dir: Path) -> None:
    store = build("app-counts-changelog", state_dir, "memory")
    with pytest.raises(StateRestoreError, match="restore deadline"):
        restore_stores("127.0.0.1:1", [store], 2.0)


def test_delivery_callback_slot(kafka: KafkaCluster, topic_factory: Any) -> None:
    """Why ProducerCollector passes on_delivery 5th: in the 6th slot the client drops it."""
    topic = topic_factory(1, "slots")
    seen: list[str] = []
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(topic, b"v", b"k", 0, lambda e, m: seen.append("5th"), None, 1, None)
    producer.produce(topic, b"v", b"k", 0, None, lambda e, m: seen.append("6th"), 1, None)
    assert producer.flush(30) == 0
    assert seen == ["5th"]
