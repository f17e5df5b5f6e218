"""Tumbling and hopping windows on hand-crafted out-of-order input, both emit modes."""

from __future__ import annotations

import pytest
from windows_helpers import count_driver, late_count, outputs, pipe

from kstream.windows import HoppingWindows, TumblingWindows

# size 10, grace 5: [0,10) closes at stream time 15, [10,20) at 25, [20,30) at 35.
TUMBLING_INPUT = [("a", 1), ("a", 3), ("b", 12), ("a", 11), ("a", 8), ("a", 22), ("a", 9),
                  ("b", 17), ("a", 31), ("b", 14), ("a", 26), ("b", 40)]


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_tumbling_update_emits_every_change_with_the_record_time(backend: str) -> None:
    with count_driver(TumblingWindows(10, grace=5), backend=backend) as driver:
        pipe(driver, TUMBLING_INPUT)
        assert outputs(driver) == [
            ("a", 0, 10, 1, 1), ("a", 0, 10, 2, 3), ("b", 10, 20, 1, 12),
            ("a", 10, 20, 1, 11), ("a", 0, 10, 3, 8), ("a", 20, 30, 1, 22),
            # a@9 is late: [0,10) closed at stream time 15
            ("b", 10, 20, 2, 17), ("a", 30, 40, 1, 31),
            # b@14 is late: [10,20) closed at 25
            ("a", 20, 30, 2, 26), ("b", 40, 50, 1, 40),
        ]
        assert late_count(driver) == 2


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
def test_tumbling_final_emits_once_per_window_when_it_closes(backend: str) -> None:
    with count_driver(TumblingWindows(10, grace=5), emit="final", backend=backend) as driver:
        topic_in = TUMBLING_INPUT
        pipe(driver, topic_in[:5])
        assert outputs(driver) == []  # nothing closed yet (stream time 12)
        pipe(driver, topic_in[5:])
        assert outputs(driver) == [
            ("a", 0, 10, 3, 9),            # at stream time 22 (closed at 15)
            ("a", 10, 20, 1, 19), ("b", 10, 20, 2, 19),   # at 31 (closed at 25)
            ("a", 20, 30, 2, 29),          # at 40 (closed at 35)
        ]
        assert late_count(driver) == 2


# size 10, advance 5, grace 0: a window [s, s+10) closes at s+10.
HOPPING_INPUT = [("a", 1), ("a", 7), ("a", 12), ("a", 4), ("a", 16), ("a", 9), ("a", 14),
                 ("a", 30)]


def test_hopping_update_updates_every_open_window() -> None:
    with count_driver(HoppingWindows(10, 5)) as driver:
        pipe(driver, HOPPING_INPUT)
        assert outputs(driver) == [
            ("a", 0, 10, 1, 1),
            ("a", 0, 10, 2, 7), ("a", 5, 15, 1, 7),
            ("a", 5, 15, 2, 12), ("a", 10, 20, 1, 12),
            # a@4 late: its only window [0,10) closed at 10
            ("a", 10, 20, 2, 16), ("a", 15, 25, 1, 16),
            # a@9 late: [0,10) and [5,15) both closed
            # [5,15) closed, [10,20) still open; stamped with its largest record time, 16
            ("a", 10, 20, 3, 16),
            ("a", 25, 35, 1, 30), ("a", 30, 40, 1, 30),
        ]
        assert late_count(driver) == 2


def test_hopping_final() -> None:
    with count_driver(HoppingWindows(10, 5), emit="final") as driver:
        pipe(driver, HOPPING_INPUT)
        assert outputs(driver) == [
            ("a", 0, 10, 2, 9), ("a", 5, 15, 2, 14), ("a", 10, 20, 3, 19),
            ("a", 15, 25, 1, 24),
        ]


def test_windowed_reduce_and_aggregate_with_json_values() -> None:
    from kstream import StreamBuilder
    from kstream.testing import TopologyTestDriver
    from serdes import JsonSerde, StringSerde, WindowedSerde

    b = StreamBuilder()
    grouped = b.stream("in", key_serde=StringSerde(), value_serde=JsonSerde()).group_by_key()
    w = grouped.windowed_by(TumblingWindows(10))
    (w.reduce(lambda agg, v: {"n": agg["n"] + v["n"]}, "sum")
     .to_stream().to("sums", value_serde=JsonSerde()))
    (w.aggregate(list, lambda _k, v, agg: [*agg, v["n"]], "lists", emit="final")
     .to_stream().to("lists", value_serde=JsonSerde()))
    with TopologyTestDriver(b) as driver:
        topic = driver.input_topic("in", StringSerde(), JsonSerde())
        for n, ts in [(1, 0), (2, 5), (3, 12)]:
            topic.pipe("k", {"n": n}, ts)
        ws = WindowedSerde(StringSerde())
        sums = driver.output_topic("sums", ws, JsonSerde()).read_key_values_to_list()
        assert [(k.start, v) for k, v in sums] == [(0, {"n": 1}), (0, {"n": 3}), (10, {"n": 3})]
        lists = driver.output_topic("lists", ws, JsonSerde()).read_key_values_to_list()
        assert [(k.start, k.end, v) for k, v in lists] == [(0, 10, [1, 2])]
