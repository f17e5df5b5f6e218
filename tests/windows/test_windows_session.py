"""Session windows: merging, bridging, splitting, tombstones, final results."""

from __future__ import annotations

import random

import pytest
from windows_helpers import count_driver, late_count, outputs, pipe

from kstream.windows import SessionWindows

# gap 10, grace 20: a session [s, e] closes at stream time e + 31.
INPUT = [("a", 0), ("a", 18), ("b", 3), ("a", 9), ("a", 5), ("a", 40), ("a", 29),
         ("a", 100), ("a", 1)]


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_session_update_merges_with_tombstones(backend: str) -> None:
    with count_driver(SessionWindows(10, grace=20), backend=backend) as driver:
        pipe(driver, INPUT)
        assert outputs(driver) == [
            ("a", 0, 0, 1, 0), ("a", 18, 18, 1, 18), ("b", 3, 3, 1, 3),
            # 9 bridges [0,0] and [18,18]: both are retracted, the merged session emitted;
            # each stamped with its session's end, its largest record time (KIP-258)
            ("a", 0, 0, None, 0), ("a", 18, 18, None, 18), ("a", 0, 18, 3, 18),
            ("a", 0, 18, 4, 18),   # inside the session: an in-place update
            ("a", 40, 40, 1, 40),  # more than the gap after 18: a new session
            ("a", 29, 29, 1, 29),  # 11 after 18 and 11 before 40: a session of its own
            ("a", 100, 100, 1, 100),
            # a@1 is late: stream time 100 - grace 20 = 80 > 1
        ]
        assert late_count(driver) == 1


def test_session_final_emits_merged_sessions_once() -> None:
    with count_driver(SessionWindows(10, grace=20), emit="final") as driver:
        pipe(driver, INPUT)
        assert outputs(driver) == [
            ("b", 3, 3, 1, 3),      # closes at 34: emitted at stream time 40
            ("a", 0, 18, 4, 18),    # closes at 49
            ("a", 29, 29, 1, 29),   # 60
            ("a", 40, 40, 1, 40),   # 71
        ]


def test_session_bridging_record_merges_three_sessions_into_one() -> None:
    with count_driver(SessionWindows(5, grace=100)) as driver:
        pipe(driver, [("k", 0), ("k", 20), ("k", 10), ("k", 5), ("k", 15)])
        out = outputs(driver)
        assert out[-3:] == [("k", 0, 10, None, 10), ("k", 20, 20, None, 20),
                            ("k", 0, 20, 5, 20)]


def _brute_force(times: list[int], gap: int) -> dict[tuple[int, int], int]:
    sessions: list[list[int]] = []
    for t in sorted(times):
        if sessions and t - sessions[-1][-1] <= gap:
            sessions[-1].append(t)
        else:
            sessions.append([t])
    return {(s[0], s[-1]): len(s) for s in sessions}


@pytest.mark.parametrize("seed", range(5))
def test_sessions_match_brute_force_on_out_of_order_input(seed: int) -> None:
    rng = random.Random(seed)
    gap, disorder = 8, 30
    times = sorted(rng.randrange(0, 600) for _ in range(100))
    shuffled = sorted(times, key=lambda t: t + rng.randrange(disorder))
    with count_driver(SessionWindows(gap, grace=disorder), emit="final") as driver:
        pipe(driver, [("k", t) for t in shuffled] + [("k", 10_000)])
        got = {(s, e): v for _, s, e, v, _ in outputs(driver)}
        assert late_count(driver) == 0
    assert got == _brute_force(times, gap)


def test_update_mode_bridges_a_closed_session_as_kafka_streams_does() -> None:
    """Issue 15, point 8. gap 10, grace 5: [0,0] is closed at stream time 16 (0 + 10 + 5 <
    16) but still stored; a@10 is within the gap of it and of [16,16]. Kafka Streams merges
    all three into [0,16] (late only if the merged session ended before 16 - 5); in emit=
    "final" mode [0,0]'s final result is out, so it stays closed (the documented rule)."""
    records = [("a", 0), ("a", 16), ("a", 10)]
    with count_driver(SessionWindows(10, grace=5)) as driver:
        pipe(driver, records)
        assert outputs(driver)[2:] == [("a", 0, 0, None, 0), ("a", 16, 16, None, 16),
                                       ("a", 0, 16, 3, 16)]
        assert late_count(driver) == 0
    with count_driver(SessionWindows(10, grace=5), emit="final") as driver:
        pipe(driver, [*records, ("z", 100)])
        assert [o for o in outputs(driver) if o[0] == "a"] == [("a", 0, 0, 1, 0),
                                                            ("a", 10, 16, 2, 16)]
