"""Window and session stores stay bounded: expired segments are deleted (with tombstones)."""

from __future__ import annotations

from typing import Any

import pytest
from windows_helpers import count_driver

from kstream.windows import HoppingWindows, SessionWindows, SlidingWindows, TumblingWindows
from serdes import StringSerde


@pytest.mark.parametrize("windows,records,bound", [
    (TumblingWindows(1000, grace=500), 100_000, 300),
    (HoppingWindows(1000, 500, grace=500), 30_000, 500),
    (SlidingWindows(200, grace=100), 30_000, 3000),
    (SessionWindows(50, grace=100), 30_000, 300),
], ids=["tumbling", "hopping", "sliding", "session"])
@pytest.mark.parametrize("emit", ["update", "final"])
def test_store_size_stays_bounded(windows: Any, records: int, bound: int, emit: str) -> None:
    keys = [f"k{i}" for i in range(50)]
    with count_driver(windows, emit=emit, commit_every=500) as driver:
        topic = driver.input_topic("in", StringSerde(), "json")
        store = driver.get_store("c")
        sizes = []
        for i in range(records):
            ts = i * 10 - (i % 7) * 3  # advancing, slightly out of order
            topic.pipe(keys[i % len(keys)], {"i": i}, ts)
            if i % 2000 == 1999:
                sizes.append(store.approximate_count())
                if emit == "final":
                    sizes.append(driver.get_store("c-pending-final").approximate_count())
        driver.output_topic("out").read_records_to_list()
        assert max(sizes) <= bound, sizes
        changelog = driver.output_topic("test-app-c-changelog").read_records_to_list()
        assert any(r.value is None for r in changelog)  # expiry reached the changelog


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_window_store_fetch_and_all(backend: str) -> None:
    with count_driver(TumblingWindows(10), retention=1000, backend=backend,
                      commit_every=2) as driver:
        topic = driver.input_topic("in", StringSerde(), "json")
        for key, ts in [("a", 1), ("a", 12), ("b", 13), ("a", 25), ("a", 27)]:
            topic.pipe(key, {}, ts)
        driver.commit()  # time-window updates reach the store at commit (the window cache)
        store = driver.get_store("c")
        assert [(w.start, v) for w, v in store.fetch("a", 0, 19)] == [(0, 1), (10, 1)]
        assert [(w.start, v) for w, v in store.fetch("a", 0, 10**9)] == [(0, 1), (10, 1),
                                                                         (20, 2)]
        assert store.get("a", 20, 30) == 2
        assert sorted((w.key, w.start) for w, _ in store.all()) == [
            ("a", 0), ("a", 10), ("a", 20), ("b", 10)]


def test_retention_expires_windows_after_size_plus_grace_by_default() -> None:
    with count_driver(TumblingWindows(10), commit_every=None) as driver:
        topic = driver.input_topic("in", StringSerde(), "json")
        for key, ts in [("a", 1), ("a", 12), ("b", 13), ("a", 25), ("a", 27)]:
            topic.pipe(key, {}, ts)
        # retention 10, segments of 5 ms: at stream time 27 every start < 15 is gone
        assert [(w.key, w.start) for w, _ in driver.get_store("c").all()] == [("a", 20)]
