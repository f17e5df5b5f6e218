"""Sliding windows (Kafka Streams semantics: windows [t - d, t] defined by the records)."""

from __future__ import annotations

import random

import pytest
from windows_helpers import count_driver, late_count, outputs, pipe

from kstream.windows import SlidingWindows

# d = 10, grace 5: a window [s, e] (inclusive) closes at stream time e + 6.
INPUT = [("a", 10), ("a", 15), ("a", 22), ("a", 12), ("a", 40)]


def test_sliding_update() -> None:
    with count_driver(SlidingWindows(10, grace=5)) as driver:
        pipe(driver, INPUT)
        assert outputs(driver) == [
            ("a", 0, 10, 1, 10),
            ("a", 11, 21, 1, 15),  # right window of the record at 10
            ("a", 5, 15, 2, 15),   # left window of 15
            ("a", 16, 26, 1, 22), ("a", 12, 22, 2, 22),
            # 12 arrives out of order (stream time 22): [5,15] is closed; [11,21] and [12,22]
            # take it; its own right window [13,23] holds 15 and 22; its left window [2,12]
            # is already closed. Each update is stamped with its window's largest record time
            # (KIP-258), not 12.
            ("a", 11, 21, 2, 15), ("a", 12, 22, 3, 22), ("a", 13, 23, 2, 22),
            ("a", 30, 40, 1, 40),
        ]
        assert late_count(driver) == 0


def test_sliding_final_carries_the_latest_record_time() -> None:
    with count_driver(SlidingWindows(10, grace=5), emit="final") as driver:
        pipe(driver, INPUT)
        assert outputs(driver) == [
            ("a", 0, 10, 1, 10), ("a", 5, 15, 2, 15),  # at stream time 22
            ("a", 11, 21, 2, 15), ("a", 12, 22, 3, 22), ("a", 13, 23, 2, 22),
            ("a", 16, 26, 1, 22),
        ]


def test_sliding_late_record_is_dropped_and_counted() -> None:
    with count_driver(SlidingWindows(10)) as driver:
        pipe(driver, [("a", 100), ("a", 89), ("a", 90)])
        # 89: even its right window [90, 100] ends before stream time 100 - grace 0.
        # 90 still fits [90, 100] and opens its right window [91, 101] (holding 100).
        assert [o[:4] for o in outputs(driver)] == [
            ("a", 90, 100, 1), ("a", 90, 100, 2), ("a", 91, 101, 1)]
        assert late_count(driver) == 1


def _brute_force(times: list[int], d: int) -> dict[tuple[int, int], int]:
    """Every window the records define, with how many records it holds."""
    windows = set()
    for t in times:
        windows.add((t - d, t))
        if any(t < u <= t + 1 + d for u in times):
            windows.add((t + 1, t + 1 + d))
    return {(s, e): sum(s <= u <= e for u in times) for s, e in windows}


@pytest.mark.parametrize("seed", range(5))
def test_sliding_matches_brute_force_on_out_of_order_input(seed: int) -> None:
    rng = random.Random(seed)
    d, disorder = 20, 15
    times = sorted(rng.randrange(0, 400) for _ in range(120))
    shuffled = sorted(times, key=lambda t: t + rng.randrange(disorder))
    with count_driver(SlidingWindows(d, grace=disorder + 1)) as driver:
        pipe(driver, [("k", t) for t in shuffled])
        latest: dict[tuple[int, int], int] = {}
        for _, s, e, v, _ in outputs(driver):
            latest[(s, e)] = v  # type: ignore[assignment]
        assert late_count(driver) == 0
    assert latest == _brute_force(times, d)
