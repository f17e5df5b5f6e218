"""Issue 15, point 4a: an aggregation's output carries the largest timestamp that
contributed to it (Kafka Streams, KIP-258), kept with the aggregate in its store, so an update
caused by an older record does not go back in time, and a restart does not forget it.

Driver tests for every aggregation (fused and unfused), the store layout and its migration,
the changelog's record timestamps; the real-broker SIGKILL test is in
tests/engine/test_engine_aggregate_timestamps.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kstream import Processor, ProcessorContext, Record, StreamBuilder
from kstream.state import kv_store
from kstream.state.kv import TimestampedKeyValueStore
from kstream.state.rocksdb import PLAIN_LAYOUT, TIMESTAMPED_LAYOUT, RocksDBBackend
from kstream.testing import TopologyTestDriver
from kstream.windows import TumblingWindows
from serdes import StringSerde, WindowedSerde

TIMES = [("a", 100), ("a", 50), ("b", 70), ("a", 200), ("a", 10), ("b", 60)]
# Running max per key: a 100, 100, 200, 200; b 70, 70.
EXPECTED = [("a", 1, 100), ("a", 2, 100), ("b", 1, 70), ("a", 3, 200), ("a", 4, 200),
            ("b", 2, 70)]


def _count_builder(emit_on_commit: bool = False) -> StreamBuilder:
    builder = StreamBuilder()
    (builder.stream("in", "string", "json").group_by_key()
     .aggregate(lambda: 0, lambda _k, _v, n: n + 1, "counts", emit_on_commit=emit_on_commit)
     .to_stream().to("out", "string", "json"))
    return builder


def _out(driver: TopologyTestDriver, topic: str = "out") -> list[tuple[object, object, int]]:
    return [(r.key, r.value, r.timestamp)
            for r in driver.output_topic(topic, "string", "json").read_records_to_list()]


@pytest.mark.parametrize("fusion", [True, False])
def test_count_updates_carry_the_largest_contributing_timestamp(tmp_path: Path,
                                                                fusion: bool) -> None:
    with TopologyTestDriver(_count_builder(), state_dir=tmp_path, fusion=fusion) as driver:
        src = driver.input_topic("in", "string", "json")
        for key, ts in TIMES:
            src.pipe(key, {}, timestamp=ts)
        assert _out(driver) == EXPECTED
        store = driver.get_store("counts")
        assert isinstance(store, TimestampedKeyValueStore)
        assert store.get("a") == 4
        assert store.get_with_timestamp("a") == (4, 200)


def test_emit_on_commit_keeps_the_largest_timestamp(tmp_path: Path) -> None:
    with TopologyTestDriver(_count_builder(emit_on_commit=True), state_dir=tmp_path,
                            commit_every=None) as driver:
        src = driver.input_topic("in", "string", "json")
        for key, ts in TIMES:
            src.pipe(key, {}, timestamp=ts)
        driver.commit()
        assert sorted(_out(driver)) == [("a", 4, 200), ("b", 2, 70)]


def test_changelog_records_carry_the_aggregate_s_timestamp(tmp_path: Path) -> None:
    """The changelog holds plain values stamped with the aggregate's timestamp, from which a
    restore rebuilds it (restart on the real broker: test_engine_aggregate_timestamps)."""
    with TopologyTestDriver(_count_builder(), state_dir=tmp_path) as driver:
        src = driver.input_topic("in", "string", "json")
        for key, ts in TIMES:
            src.pipe(key, {}, timestamp=ts)
        changelog = driver.output_topic(f"{driver.application_id}-counts-changelog",
                                        "string", "json").read_records_to_list()
        assert [(r.key, r.value, r.timestamp) for r in changelog] == EXPECTED


def test_table_aggregate_and_cogroup_stamp_the_largest_timestamp(tmp_path: Path) -> None:
    builder = StreamBuilder()
    (builder.table("users", "string", "json", name="users")
     .group_by(lambda _k, v: (v["team"], v), key_serde="string")
     .count("team-sizes").to_stream().to("sizes", "string", "json"))
    a = builder.stream("clicks", "string", "json").group_by_key()
    b = builder.stream("views", "string", "json").group_by_key()
    (a.cogroup(lambda _k, _v, n: n + 1).cogroup(b, lambda _k, _v, n: n + 10)
     .aggregate(lambda: 0, "activity").to_stream().to("activity", "string", "json"))
    with TopologyTestDriver(builder, state_dir=tmp_path) as driver:
        users = driver.input_topic("users", "string", "json")
        users.pipe("u1", {"team": "x"}, timestamp=300)
        users.pipe("u2", {"team": "x"}, timestamp=100)
        users.pipe("u1", {"team": "y"}, timestamp=50)   # leaves x (at 300), joins y
        assert _out(driver, "sizes") == [("x", 1, 300), ("x", 2, 300), ("x", 1, 300),
                                         ("y", 1, 50)]
        driver.input_topic("clicks", "string", "json").pipe("k", {}, timestamp=40)
        driver.input_topic("views", "string", "json").pipe("k", {}, timestamp=30)
        assert _out(driver, "activity") == [("k", 1, 40), ("k", 11, 40)]


def _windows(driver: TopologyTestDriver) -> list[tuple[int, object, int]]:
    out = driver.output_topic("out", WindowedSerde(StringSerde()), "json")
    return [(r.key.start, r.value, r.timestamp) for r in out.read_records_to_list()]


@pytest.mark.parametrize("fusion", [True, False])
def test_time_window_updates_carry_the_window_s_largest_timestamp(tmp_path: Path,
                                                                   fusion: bool) -> None:
    builder = StreamBuilder()
    (builder.stream("in", "string", "json").group_by_key()
     .windowed_by(TumblingWindows(1000, grace=1000)).count("w")
     .to_stream().to("out", WindowedSerde(StringSerde()), "json"))
    with TopologyTestDriver(builder, state_dir=tmp_path, fusion=fusion) as driver:
        src = driver.input_topic("in", "string", "json")
        for ts in (500, 300, 900, 100, 1500):
            src.pipe("a", {}, timestamp=ts)
        got = _windows(driver)
        assert got == [(0, 1, 500), (0, 2, 500), (0, 3, 900), (0, 4, 900), (1000, 1, 1500)]
        driver.commit()  # the window store keeps the timestamp across commits
        src.pipe("a", {}, timestamp=200)
        got = _windows(driver)
        assert got == [(0, 5, 900)]


def _plain_store_with_data(path: Path) -> None:
    backend = RocksDBBackend(path)
    backend.write([(b"k", b"1")], 7)
    backend.close()


def test_a_plain_local_store_is_rebuilt_in_the_timestamped_layout(tmp_path: Path) -> None:
    """A store written before aggregations kept timestamps has plain values on disk: it is
    deleted (the changelog, plain in both layouts, restores it), never misread."""
    _plain_store_with_data(tmp_path / "counts")
    builder = kv_store("counts", timestamped=True)
    store = builder.build(tmp_path, 0, "app-counts-changelog")
    try:
        assert store.backend.committed_offset is None
        assert store.get("k") is None
        assert store.backend.layout(default=PLAIN_LAYOUT) == TIMESTAMPED_LAYOUT  # type: ignore[attr-defined]
    finally:
        store.close()
    again = builder.build(tmp_path, 0, "app-counts-changelog")  # same layout: kept
    try:
        assert again.backend.layout(default=PLAIN_LAYOUT) == TIMESTAMPED_LAYOUT  # type: ignore[attr-defined]
    finally:
        again.close()


def test_a_plain_store_with_the_plain_layout_is_kept(tmp_path: Path) -> None:
    _plain_store_with_data(tmp_path / "plain")
    store = kv_store("plain", key_serde="bytes", value_serde="bytes").build(
        tmp_path, 0, "app-plain-changelog")
    try:
        assert store.backend.committed_offset == 7
        assert store.get(b"k") == b"1"
    finally:
        store.close()


def test_changelog_stamps_are_bounded_to_what_a_broker_accepts() -> None:
    """Entries without a time, deletes, and times beyond now + MAX_FUTURE_MS (a Kafka 4 broker
    rejects records over an hour ahead, failing the commit) are stamped within bounds."""
    from kstream.state.backend import TIMESTAMP_PREFIX
    from kstream.state.changelog import MAX_FUTURE_MS, _split_timestamps

    def with_timestamp(value: bytes, timestamp: int) -> bytes:
        return TIMESTAMP_PREFIX.pack(timestamp) + value

    now = 1_800_000_000_000
    entries: list[tuple[bytes, bytes | None]] = [
        (b"a", with_timestamp(b"1", 5)), (b"b", None), (b"c", with_timestamp(b"2", -1)),
        (b"d", with_timestamp(b"3", now + 10 * MAX_FUTURE_MS))]
    plain, stamps = _split_timestamps(entries, now)
    assert plain == [(b"a", b"1"), (b"b", None), (b"c", b"2"), (b"d", b"3")]
    assert stamps == [5, now, now, now + MAX_FUTURE_MS]


class _Latest(Processor):
    """Keeps each key's newest value by event time, whatever order records come in: what a
    Processor API user builds on kv_store(..., timestamped=True)."""

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        store = context.get_store("latest")
        assert isinstance(store, TimestampedKeyValueStore)
        self.latest = store

    def process(self, record: Record) -> None:
        held = self.latest.get_with_timestamp(record.key)
        if held is None or record.timestamp >= held[1]:
            self.latest.put_with_timestamp(record.key, record.value, record.timestamp)
            self.context.forward(record)


def test_a_processor_api_timestamped_store_keeps_and_logs_timestamps(tmp_path: Path) -> None:
    builder = StreamBuilder()
    builder.topology.add_store(kv_store("latest", key_serde="string", value_serde="json",
                                        timestamped=True))
    builder.stream("in", "string", "json").process(_Latest, "latest").to("out", "string", "json")
    with TopologyTestDriver(builder, state_dir=tmp_path) as driver:
        src = driver.input_topic("in", "string", "json")
        for i, (key, ts) in enumerate(TIMES):
            src.pipe(key, i, timestamp=ts)
        # a at 100 (0), 50 ignored, b at 70 (2), a at 200 (3), 10 and b at 60 ignored
        assert _out(driver) == [("a", 0, 100), ("b", 2, 70), ("a", 3, 200)]
        assert driver.get_store("latest").get_with_timestamp("a") == (3, 200)
        changelog = driver.output_topic(f"{driver.application_id}-latest-changelog",
                                        "string", "json").read_records_to_list()
        assert [(r.key, r.value, r.timestamp) for r in changelog] == [
            ("a", 0, 100), ("b", 2, 70), ("a", 3, 200)]  # plain values, stamped: restorable
