"""Error policy: `fail` raises the task's RecordError; `dead_letter` writes the original bytes."""

from __future__ import annotations

import pytest

from kstream import RecordError, StreamBuilder
from kstream.testing import TopologyTestDriver


def _explode(value: dict) -> dict:
    if value.get("boom"):
        raise ZeroDivisionError("boom")
    return {"n": value["n"] * 2}


def _builder() -> StreamBuilder:
    b = StreamBuilder()
    (b.stream("in", key_serde="string", value_serde="json")
     .map_values(_explode)
     .to("out", key_serde="string", value_serde="json"))
    return b


def test_fail_policy_raises_deserialize_error_naming_the_record() -> None:
    with TopologyTestDriver(_builder(), partitions={"in": 2}) as driver:
        raw = driver.input_topic("in", "string")  # values as raw bytes
        raw.pipe("k", b'{"n": 1}', partition=1)
        raw.pipe("k", b'{"n": 2}', partition=1)
        with pytest.raises(RecordError) as info:
            raw.pipe("k", b"{not json", partition=1)
        err = info.value
        assert (err.stage, err.topic, err.partition, err.offset) == ("deserialize", "in", 1, 2)
        assert "in[1]@2" in str(err)
        out = driver.output_topic("out", "string", "json")
        assert out.read_values_to_list() == [{"n": 2}, {"n": 4}]


def test_fail_policy_raises_process_error_and_stops_like_the_engine() -> None:
    with TopologyTestDriver(_builder()) as driver:
        src = driver.input_topic("in", "string", "json")
        src.pipe("a", {"n": 1})
        with pytest.raises(RecordError) as info:
            src.pipe("b", {"boom": True})
        assert (info.value.stage, info.value.offset) == ("process", 1)
        assert isinstance(info.value.cause, ZeroDivisionError)
        assert driver.stopped is info.value
        assert driver.committed_offsets("in") == {0: 1}  # right at the bad record
        # The engine stops at a bad record under "fail"; so does the driver.
        with pytest.raises(RuntimeError, match=r"stopped after a failed record at in\[0\]@1"):
            src.pipe("c", {"n": 3})
        with pytest.raises(RuntimeError, match="stopped"):
            driver.advance_wall_clock(10)
        assert driver.output_topic("out", "string", "json").read_key_values_to_list() == [
            ("a", {"n": 2})]


def test_error_at_offset_zero_names_offset_zero() -> None:
    with TopologyTestDriver(_builder()) as driver:
        with pytest.raises(RecordError) as info:
            driver.input_topic("in", "string").pipe("k", b"{not json")
        assert info.value.offset == 0


def test_dead_letter_writes_original_bytes_and_headers_and_continues() -> None:
    with TopologyTestDriver(_builder(), "shop", error_policy="dead_letter") as driver:
        raw = driver.input_topic("in")
        raw.pipe(b"a", b'{"n": 1}', timestamp=10)
        raw.pipe(b"b", b"{not json", timestamp=20, headers={"trace": b"t-2"})
        raw.pipe(b"c", b'{"boom": true}', timestamp=30)
        raw.pipe(b"d", b'{"n": 4}', timestamp=40)
        out = driver.output_topic("out", "string", "json")
        assert out.read_key_values_to_list() == [("a", {"n": 2}), ("d", {"n": 8})]
        dlq = driver.output_topic("shop-dlq").read_records_to_list()
    assert [(r.key, r.value, r.timestamp) for r in dlq] == [
        (b"b", b"{not json", 20), (b"c", b'{"boom": true}', 30)]
    first, second = (dict(r.headers or []) for r in dlq)
    assert dlq[0].headers[0] == ("trace", b"t-2")  # the original headers come first
    assert first["kstream.error.stage"] == b"deserialize"
    assert (first["kstream.error.topic"], first["kstream.error.partition"],
            first["kstream.error.offset"]) == (b"in", b"0", b"1")
    assert second["kstream.error.stage"] == b"process"
    assert second["kstream.error.offset"] == b"2"
    assert second["kstream.error.exception"] == b"ZeroDivisionError"
    assert b"boom" in second["kstream.error.message"]


def test_dead_letter_of_a_fed_back_record() -> None:
    b = StreamBuilder()
    rep = "test-app-by-n-repartition"
    b.stream("in", key_serde="string", value_serde="json").to(rep, "string", "json")
    (b.stream(rep, key_serde="string", value_serde="json").map_values(_explode)
     .to("out", key_serde="string", value_serde="json"))
    with TopologyTestDriver(b, error_policy="dead_letter") as driver:
        src = driver.input_topic("in", "string", "json")
        src.pipe_many([("a", {"n": 1}), ("b", {"boom": 1}), ("c", {"n": 3})])
        assert driver.output_topic("out", "string", "json").read_key_values_to_list() == [
            ("a", {"n": 2}), ("c", {"n": 6})]
        dlq = driver.output_topic("test-app-dlq", "string", "json").read_records_to_list()
    assert [(r.key, r.value) for r in dlq] == [("b", {"boom": 1})]
    headers = dict(dlq[0].headers or [])
    assert headers["kstream.error.topic"] == rep.encode()
    assert headers["kstream.error.offset"] == b"1"
