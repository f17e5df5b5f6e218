"""A store value reads back the same from the cache and from disk (issue 15, point 1).

The driver decodes every store write again and names the store, key and type that a restart
would change; on a real broker, an aggregate of JSON-native values reads back identical types
after a restart that restores it from the changelog.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from kstream import App, StreamBuilder
from kstream.state.round_trip import StoreRoundTripError, first_difference
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from serdes import JsonSerde, StringSerde


def latest_builder(value_of: Any) -> StreamBuilder:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), JsonSerde()).group_by_key()
     .aggregate(lambda: None, lambda _k, v, _agg: value_of(v), "latest")
     .to_stream().to("out", StringSerde(), JsonSerde()))
    return b


def test_driver_names_a_datetime_that_a_restart_turns_into_a_str() -> None:
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5)
    driver = TopologyTestDriver(latest_builder(lambda v: {"n": v, "seen": stamp}))
    with driver, pytest.raises(StoreRoundTripError) as info:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("card-7", 1)
    msg = str(info.value)
    assert "store 'latest'" in msg and "'card-7'" in msg
    assert "value['seen'] is datetime" in msg and "reads back as str" in msg
    assert "JsonSerde" in msg


def test_driver_names_a_tuple_that_comes_back_a_list() -> None:
    driver = TopologyTestDriver(latest_builder(lambda v: (v, v)))
    with driver, pytest.raises(StoreRoundTripError, match=r"value is tuple .* reads back as list"):
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", 1)


def test_json_native_values_pass_and_the_check_can_be_turned_off() -> None:
    value = {"n": 1, "f": 0.5, "tags": ["a"], "none": None, "ok": True, "nested": {"x": [1]}}
    with TopologyTestDriver(latest_builder(lambda v: value)) as driver:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", 1)
        assert driver.output_topic("out", StringSerde(), JsonSerde()).read_value() == value
    with TopologyTestDriver(latest_builder(lambda v: (v, v)),
                            check_store_round_trip=False) as driver:
        driver.input_topic("in", StringSerde(), JsonSerde()).pipe("k", 1)


def test_first_difference() -> None:
    assert first_difference({"a": [1, 2.0]}, {"a": [1, 2.0]}) is None
    assert first_difference(math.nan, math.nan) is None
    assert "value['a'][1] is float" in str(first_difference({"a": [1, 2.0]}, {"a": [1, 2]}))
    assert "has keys [1]" in str(first_difference({1: "x"}, {"1": "x"}))


RECORDS, KEYS = 400, 8


def shapes_builder(inp: str, out: str, seen: list[str]) -> StreamBuilder:
    """Aggregate of every JSON-native type; records the type shape the adder is handed."""

    def shape(agg: Any) -> str:
        return ",".join(f"{k}:{type(v).__name__}" for k, v in sorted(agg.items()))

    def add(_k: str, v: int, agg: dict[str, Any]) -> dict[str, Any]:
        if agg["n"]:
            seen.append(shape(agg))
        return {"n": agg["n"] + 1, "total": agg["total"] + v / 2, "tags": [*agg["tags"][-2:],
                f"t{v}"], "last": v, "odd": bool(v % 2), "none": None, "sub": {"max": max(
                    agg["sub"]["max"], v)}}

    b = StreamBuilder()
    (b.stream(inp, StringSerde(), JsonSerde()).group_by_key()
     .aggregate(lambda: {"n": 0, "total": 0.0, "tags": [], "last": None, "odd": False,
                         "none": None, "sub": {"max": -1}}, add, "shapes")
     .to_stream().to(out, StringSerde(), JsonSerde()))
    return b


def test_types_read_back_identical_after_a_restart_from_the_changelog(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out = topic_factory(partitions=2, prefix="rt-in"), topic_factory(partitions=2,
                                                                          prefix="rt-out")
    app_id = kafka.unique_name("round-trip")
    seen: list[str] = []
    rows = [(f"k{i % KEYS}", i) for i in range(RECORDS)]

    def run(part: list[tuple[str, int]], state_dir: Path, done: int) -> None:
        app = App(shapes_builder(inp, out, seen), application_id=app_id,
                  bootstrap_servers=kafka.bootstrap_servers,
                  processing_guarantee="exactly_once", state_dir=state_dir)
        with running_app(app):
            kafka.produce(inp, ((k.encode(), orjson.dumps(v)) for k, v in part))
            wait_until(lambda: sum(max(0, o) for o in kafka.committed_offsets(app_id, inp)
                                   .values()) == done, 60, "the input to be committed")

    run(rows[:RECORDS // 2], tmp_path / "first", RECORDS // 2)
    # A fresh state dir: the second run restores every aggregate from the changelog.
    run(rows[RECORDS // 2:], tmp_path / "second", RECORDS)
    assert len(seen) == RECORDS - KEYS
    assert set(seen) == {"last:int,n:int,none:NoneType,odd:bool,sub:dict,tags:list,total:float"}
    final: dict[str, Any] = {}
    for r in kafka.read_topic(out, min_count=RECORDS, timeout=60):
        final[r.key.decode()] = orjson.loads(r.value)  # type: ignore[union-attr,arg-type]
    for k in range(KEYS):
        values = [v for key, v in rows if key == f"k{k}"]
        assert final[f"k{k}"]["n"] == len(values)
        assert final[f"k{k}"]["total"] == sum(v / 2 for v in values)
        assert final[f"k{k}"]["sub"]["max"] == max(values)
