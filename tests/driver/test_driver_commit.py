"""Stores made by build_task, the commit steps, changelog capture and state-dir lifecycle.

The store here is a minimal stand-in with the hooks Task calls, so these tests do not depend
on kstream.state's internals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kstream import Processor, Record, Topology
from kstream.testing import TopologyTestDriver


class BufferedStore:
    """Writes are buffered until after_commit, like the real stores (see DESIGN.md)."""

    def __init__(self, directory: Path, partition: int, changelog: str) -> None:
        self.directory = directory
        self.partition = partition
        self.changelog = changelog
        self.data: dict[bytes, int] = {}
        self.buffer: dict[bytes, int] = {}
        self.changelog_offset = -1
        self.events: list[str] = []
        self.closed = False

    def get(self, key: bytes) -> int:
        return self.buffer.get(key, self.data.get(key, 0))

    def put(self, key: bytes, value: int) -> None:
        self.buffer[key] = value

    def prepare_commit(self, collector: Any) -> None:
        self.events.append("prepare")
        for key, value in self.buffer.items():
            collector.send_changelog(self.changelog, self.partition, key, str(value).encode(),
                                     0, self._delivered)

    def _delivered(self, err: Any, msg: Any) -> None:
        assert err is None
        self.events.append(f"delivered@{msg.offset()}")
        self.changelog_offset = msg.offset()

    def after_commit(self) -> None:
        self.events.append("after")
        self.data.update(self.buffer)
        self.buffer.clear()

    def discard_uncommitted(self) -> None:
        self.buffer.clear()

    def close(self) -> None:
        self.closed = True


class BufferedStoreBuilder:
    name = "counts"
    logging = True  # declares its changelog, so it is an internal topic sized like the input

    def changelog_topic(self, application_id: str) -> str:
        return f"{application_id}-{self.name}-changelog"

    def changelog_topic_config(self) -> dict[str, str]:
        return {"cleanup.policy": "compact"}

    def build(self, directory: Path, partition: int, changelog: str) -> BufferedStore:
        return BufferedStore(directory, partition, changelog)


class Counter(Processor):
    def process(self, record: Record) -> None:
        store = self.context.get_store("counts")
        count = store.get(record.key) + 1
        store.put(record.key, count)
        self.context.forward(record.with_value(str(count).encode()))


def _topology() -> Topology:
    t = Topology()
    t.add_source("src", "in")
    t.add_processor("counter", Counter, "src")
    t.add_store(BufferedStoreBuilder(), "counter")
    t.add_sink("out", "counts", "counter")
    return t


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once", "at_most_once"])
def test_commit_after_every_record_by_default(guarantee: str) -> None:
    # Every guarantee's committer (kstream.runtime.commit) sends the changelog and learns its
    # offsets (delivery reports) before it applies the writes locally.
    with TopologyTestDriver(_topology(), "app", processing_guarantee=guarantee) as driver:
        src = driver.input_topic("in")
        store = driver.get_store("counts")
        src.pipe(b"a", b"")
        assert store.data == {b"a": 1} and not store.buffer
        assert store.events == ["prepare", "delivered@0", "after"]
        src.pipe(b"a", b"")
        src.pipe(b"b", b"")
        assert store.data == {b"a": 2, b"b": 1}
        assert store.changelog_offset == 2
        changelog = driver.output_topic("app-counts-changelog", "string", "string")
        assert changelog.read_key_values_to_list() == [("a", "1"), ("a", "2"), ("b", "1")]
        assert driver.output_topic("counts").read_values_to_list() == [b"1", b"2", b"1"]
        assert store.directory == driver.state_dir / "0_0"
    assert store.closed


def test_commit_every_n_and_manual_commit() -> None:
    with TopologyTestDriver(_topology(), commit_every=2) as driver:
        src = driver.input_topic("in")
        store = driver.get_store("counts")
        src.pipe(b"a", b"")
        assert store.events == [] and store.buffer == {b"a": 1}
        src.pipe(b"a", b"")
        assert store.data == {b"a": 2} and store.events == ["prepare", "delivered@0", "after"]
    with TopologyTestDriver(_topology(), commit_every=None) as driver:
        src = driver.input_topic("in")
        store = driver.get_store("counts")
        for _ in range(3):
            src.pipe(b"a", b"")
        driver.advance_wall_clock(10_000)
        assert store.data == {} and store.get(b"a") == 3  # reads see the buffer
        driver.commit()
        assert store.data == {b"a": 3}


def test_close_commits_pending_writes_and_removes_temp_state_dir() -> None:
    driver = TopologyTestDriver(_topology(), commit_every=100)
    driver.input_topic("in").pipe(b"a", b"")
    store = driver.get_store("counts")
    state_dir = driver.state_dir
    driver.close()
    assert store.data == {b"a": 1} and store.closed
    assert not state_dir.exists()


def test_no_commit_when_the_with_block_raises() -> None:
    with pytest.raises(KeyError), TopologyTestDriver(_topology(), commit_every=None) as driver:
        driver.input_topic("in").pipe(b"a", b"")
        store = driver.get_store("counts")
        raise KeyError("test failure")
    assert store.data == {} and store.closed


def test_stores_per_partition_and_explicit_state_dir(tmp_path: Path) -> None:
    with TopologyTestDriver(_topology(), partitions={"in": 2}, state_dir=tmp_path) as driver:
        src = driver.input_topic("in")
        src.pipe(b"k", b"", partition=0)
        src.pipe(b"k", b"", partition=1)
        src.pipe(b"k", b"", partition=1)
        zero, one = driver.get_store("counts", 0), driver.get_store("counts", 1)
        assert zero is not one
        assert (zero.data, one.data) == ({b"k": 1}, {b"k": 2})
        assert one.directory == tmp_path / "0_1"
        changelog = driver.output_topic("test-app-counts-changelog").read_records_to_list()
        assert [(r.partition, r.offset, r.value) for r in changelog] == [
            (0, 0, b"1"), (1, 0, b"1"), (1, 1, b"2")]
        with pytest.raises(KeyError, match="partition 2"):
            driver.get_store("counts", 2)
        with pytest.raises(KeyError, match="unknown store"):
            driver.get_store("nope")
    assert tmp_path.exists()  # a caller's directory is left alone
