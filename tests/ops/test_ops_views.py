"""Interactive-query views without a broker: tasks built as the engine builds them
(build_task), published to QueryableTasks as the engine publishes them.

What must hold: reads see committed state only; a key of a partition not owned here says
"not owned here", a restoring or rebalancing instance says "retry" (never None or []); reads
from other threads stay correct while the owner thread commits, withdraws and closes stores.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kstream import SessionWindows, StreamBuilder, TumblingWindows
from kstream.errors import NotOwnedHereError, StoreNotAvailableError, UnknownStoreError
from kstream.queries import KeyValueView, QueryableTasks, SessionView, WindowView, view_for
from kstream.runtime.task import Task, build_task
from kstream.topology import Topology
from serdes import StringSerde, Windowed

PARTITIONS = 3


class _Collector:
    """Just enough of the record collector for stores: changelog sends are "delivered"."""

    def __init__(self) -> None:
        self.offset = 0

    def send(self, *args: Any, **kwargs: Any) -> None:
        return None

    def partition_count(self, topic: str) -> int:
        return PARTITIONS

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Any) -> None:
        self.offset += 1
        offset = self.offset
        on_delivery(None, SimpleNamespace(offset=lambda: offset))


def _counts(backend: str = "rocksdb") -> Topology:
    b = StreamBuilder()
    (b.stream("in", key_serde=StringSerde(), value_serde=StringSerde())
     .group_by_key().count("counts", backend=backend))
    return b.build()


def _windowed() -> Topology:
    b = StreamBuilder()
    s = b.stream("in", key_serde=StringSerde(), value_serde=StringSerde())
    s.group_by_key().windowed_by(TumblingWindows(60_000)).count("per-minute")
    s2 = b.stream("in2", key_serde=StringSerde(), value_serde=StringSerde())
    s2.group_by_key().windowed_by(SessionWindows(10_000)).aggregate(
        lambda: 0, lambda _k, _v, agg: agg + 1, "sessions",
        merger=lambda _k, a, b: a + b)
    return b.build()


class Harness:
    """Tasks of one topology, published like the engine does."""

    def __init__(self, topology: Topology, root: Path) -> None:
        self.topology = topology.bind("unit")
        self.root = root
        self.collector = _Collector()
        self.queries = QueryableTasks(self.topology)
        self.queries.partition_counts = {t: PARTITIONS for s in self.queries.subtopologies
                                         for t in s.source_topics}
        self.tasks: dict[tuple[int, int], Task] = {}

    def sub_of(self, store: str) -> int:
        return self.queries.sub_of_store(store).index

    def build(self, store: str, partitions: list[int]) -> None:
        sub = self.queries.subtopologies[self.sub_of(store)]
        for p in partitions:
            self.tasks[(sub.index, p)] = build_task("unit", self.topology, sub, p,
                                                    self.collector, self.root)
        self.queries.assigned(self.tasks)

    def publish(self) -> None:
        self.queries.publish(self.tasks)

    def view(self, name: str) -> Any:
        return view_for(name, self.topology, lambda: self.queries)

    def commit(self) -> None:
        for task in self.tasks.values():
            task.prepare_commit()
        for task in self.tasks.values():
            task.after_commit()

    def close(self) -> None:
        self.queries.stopped()
        for task in self.tasks.values():
            task.close()
        self.tasks.clear()


@pytest.fixture
def harness(tmp_path: Path) -> Any:
    made: list[Harness] = []

    def make(topology: Topology) -> Harness:
        h = Harness(topology, tmp_path / f"state{len(made)}")
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _keys_by_partition(view: Any, count: int = 60) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for i in range(count):
        out.setdefault(view.partition_for_key(f"k{i}"), []).append(f"k{i}")
    assert set(out) == set(range(PARTITIONS))
    return out


@pytest.mark.parametrize("backend", ["rocksdb", "memory"])
def test_kv_view_reads_committed_state_only(harness: Any, backend: str) -> None:
    h = harness(_counts(backend))
    h.build("counts", list(range(PARTITIONS)))
    h.publish()
    view = h.view("counts")
    assert isinstance(view, KeyValueView)
    stores = {p: h.tasks[(h.sub_of("counts"), p)].stores["counts"] for p in range(PARTITIONS)}
    keys = _keys_by_partition(view)
    for p, ks in keys.items():
        for k in ks:
            stores[p].put(k, len(k))
    assert view.get("k1") is None  # buffered, not committed
    assert view.all() == [] and view.approximate_count() == 0
    h.commit()
    assert view.get("k1") == 2
    everything = view.all()
    assert sorted(everything) == sorted((k, len(k)) for ks in keys.values() for k in ks)
    # Scans: key order within a partition, partitions in order.
    per_partition = [sorted(ks) for _, ks in sorted(keys.items())]
    assert [k for k, _ in everything] == [k for ks in per_partition for k in ks]
    assert view.range("k1", "k2") == sorted(
        [(k, len(k)) for k in keys[0] if "k1" <= k <= "k2"]) + sorted(
        [(k, len(k)) for k in keys[1] if "k1" <= k <= "k2"]) + sorted(
        [(k, len(k)) for k in keys[2] if "k1" <= k <= "k2"])
    assert len(view.all(limit=5)) == 5
    assert view.approximate_count() >= 1
    # An uncommitted overwrite stays invisible; a committed delete is visible.
    p1 = view.partition_for_key("k1")
    stores[p1].put("k1", 99)
    assert view.get("k1") == 2
    stores[p1].delete("k1")
    h.commit()
    assert view.get("k1") is None


def test_kv_prefix_scan_with_tuple_keys(harness: Any) -> None:
    from kstream.state import kv_store

    topology = Topology()
    topology.add_source("src", "in", StringSerde(), StringSerde())
    topology.add_processor("proc", lambda: _Noop(), "src")
    topology.add_store(kv_store("pairs"), "proc")  # default ordered tuple keys
    h = harness(topology)
    h.build("pairs", list(range(PARTITIONS)))
    h.publish()
    view = h.view("pairs")
    for card in ("a", "b"):
        for n in range(3):
            key = (card, n)
            h.tasks[(0, view.partition_for_key(key))].stores["pairs"].put(key, n)
    h.commit()
    assert sorted(view.prefix(("a",))) == [(("a", 0), 0), (("a", 1), 1), (("a", 2), 2)]


class _Noop:
    def init(self, context: Any) -> None:
        return None

    def process(self, record: Any) -> None:
        return None

    def close(self) -> None:
        return None


def test_not_owned_restoring_and_rebalancing_never_answer_empty(harness: Any) -> None:
    h = harness(_counts())
    view = h.view("counts")
    with pytest.raises(StoreNotAvailableError, match="not running"):
        view.get("k1")  # nothing assigned or published yet
    keys = _keys_by_partition(view)
    h.build("counts", [0])
    # Assigned, restoring: retry, not None.
    with pytest.raises(StoreNotAvailableError) as restoring:
        view.get(keys[0][0])
    assert restoring.value.reason == "restoring"
    with pytest.raises(StoreNotAvailableError):
        view.all()
    h.publish()
    assert view.get(keys[0][0]) is None  # owned and readable: no value yet is an answer
    with pytest.raises(NotOwnedHereError) as elsewhere:
        view.get(keys[1][0])
    assert elsewhere.value.partition == 1
    assert view.all() == []  # this instance owns partition 0, which is empty
    h.queries.withdraw()  # a rebalance began
    for call in (lambda: view.get(keys[0][0]), view.all, view.approximate_count):
        with pytest.raises(StoreNotAvailableError) as rebalancing:
            call()
        assert rebalancing.value.reason == "rebalancing"
    with pytest.raises(UnknownStoreError):
        h.view("nope")


def test_window_and_session_views(harness: Any) -> None:
    h = harness(_windowed())
    h.build("per-minute", list(range(PARTITIONS)))
    h.build("sessions", list(range(PARTITIONS)))
    h.publish()
    windows = h.view("per-minute")
    sessions = h.view("sessions")
    assert isinstance(windows, WindowView) and isinstance(sessions, SessionView)
    wsub, ssub = h.sub_of("per-minute"), h.sub_of("sessions")
    ws = h.tasks[(wsub, windows.partition_for_key("card"))].stores["per-minute"]
    for start in (0, 60_000, 120_000):
        ws.put("card", start, start + 60_000, start // 60_000 + 1)
    ss = h.tasks[(ssub, sessions.partition_for_key("card"))].stores["sessions"]
    ss.put("card", 1_000, 5_000, 3)
    ss.put("card", 50_000, 52_000, 2)
    assert windows.fetch("card") == [] and sessions.fetch("card") == []  # not committed
    h.commit()
    assert windows.fetch("card", 60_000, 120_000) == [
        (Windowed("card", 60_000, 120_000), 2), (Windowed("card", 120_000, 180_000), 3)]
    assert windows.fetch("other") == []
    assert [w.start for w, _ in windows.fetch_all(0, 60_000)] == [0, 60_000]
    assert len(windows.all()) == 3
    assert sessions.find_sessions("card", 4_000, 60_000) == [
        (Windowed("card", 1_000, 5_000), 3), (Windowed("card", 50_000, 52_000), 2)]
    assert sessions.find_sessions("card", 6_000, 60_000) == [
        (Windowed("card", 50_000, 52_000), 2)]
    assert sessions.find_sessions("card", 0, 500) == []
    assert len(sessions.fetch("card")) == 2 and len(sessions.all()) == 2


@pytest.mark.parametrize("backend", ["rocksdb", "memory"])
def test_reads_from_other_threads_while_the_owner_commits_and_rebalances(
        harness: Any, backend: str) -> None:
    """Readers hammer the view while the owner thread writes and commits (each key's value
    only grows), withdraws and republishes, and (RocksDB) closes and reopens its stores.
    Every answer is a committed value or "retry"; values never go backwards."""
    h = harness(_counts(backend))
    h.build("counts", list(range(PARTITIONS)))
    h.publish()
    view = h.view("counts")
    keys = [f"k{i}" for i in range(40)]
    committed: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    problems: list[str] = []
    answers = [0, 0]  # values, retries

    def reader() -> None:
        seen: dict[str, int] = {}
        while not stop.is_set():
            for key in keys:
                try:
                    value = view.get(key)
                except StoreNotAvailableError:
                    answers[1] += 1
                    continue
                with lock:
                    ceiling = committed.get(key)
                answers[0] += 1
                if value is None:
                    if seen.get(key) is not None:
                        problems.append(f"{key}: None after {seen[key]}")
                    continue
                if ceiling is None or value > ceiling or value < seen.get(key, 0):
                    problems.append(f"{key}: {value} (committed {ceiling}, seen {seen.get(key)})")
                seen[key] = value
            with contextlib.suppress(StoreNotAvailableError):
                view.all()

    threads = [threading.Thread(target=reader, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    sub = h.sub_of("counts")
    for round_no in range(1, 301):
        assert time.monotonic() < deadline, "owner loop too slow"
        for key in keys:
            h.tasks[(sub, view.partition_for_key(key))].stores["counts"].put(key, round_no)
        with lock:  # committed before any reader could see it: the ceiling is raised first
            for key in keys:
                committed[key] = round_no
        h.commit()
        if round_no % 25 == 0:
            h.queries.withdraw()
            if backend == "rocksdb":
                for task in h.tasks.values():
                    task.close()
                h.tasks.clear()
                h.build("counts", list(range(PARTITIONS)))  # reopens the same directories
            h.publish()
    stop.set()
    for t in threads:
        t.join(10)
    assert not problems, problems[:10]
    assert answers[0] > 1000, answers
