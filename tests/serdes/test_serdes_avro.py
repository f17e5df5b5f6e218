"""Schemaless Avro: round-trips, schema evolution, schema inputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serdes import AvroSerde, SerdeContext, SerializationError

USER_V1 = {
    "type": "record",
    "name": "User",
    "namespace": "com.example",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {
            "name": "address",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [{"name": "city", "type": "string"}],
                },
            ],
            "default": None,
        },
        {"name": "scores", "type": {"type": "array", "items": "double"}, "default": []},
    ],
}
# Compatible change: a new field with a default.
USER_V2 = {
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "email", "type": "string", "default": ""}],
}
# Incompatible for v1 data: a new field without default.
USER_BAD = {
    **USER_V1,
    "fields": [*USER_V1["fields"], {"name": "tier", "type": "int"}],
}

users = st.fixed_dictionaries(
    {
        "name": st.text(),
        "age": st.integers(-(2**31), 2**31 - 1),
        "address": st.none() | st.fixed_dictionaries({"city": st.text()}),
        "scores": st.lists(st.floats(allow_nan=False)),
    }
)


@given(users)
def test_roundtrip(user: dict) -> None:
    s = AvroSerde(USER_V1)
    assert s.deserialize(s.serialize(user)) == user


def test_v1_written_reads_with_v2_defaults() -> None:
    old = {"name": "ada", "age": 36, "address": {"city": "London"}, "scores": [1.0]}
    data = AvroSerde(USER_V1).serialize(old)
    assert AvroSerde(USER_V1, reader_schema=USER_V2).deserialize(data) == {**old, "email": ""}


def test_incompatible_reader_raises_naming_the_record() -> None:
    data = AvroSerde(USER_V1).serialize({"name": "x", "age": 1})
    ctx = SerdeContext(topic="users", partition=5, offset=77)
    with pytest.raises(SerializationError) as info:
        AvroSerde(USER_V1, reader_schema=USER_BAD).deserialize(data, ctx)
    err = info.value
    assert (err.topic, err.partition, err.offset) == ("users", 5, 77)
    assert "users" in str(err) and "77" in str(err) and "AvroSerde" in str(err)


def test_schema_inputs_dict_json_text_and_avsc_file(tmp_path: Path) -> None:
    path = tmp_path / "user.avsc"
    path.write_text(json.dumps(USER_V1))
    user = {"name": "n", "age": 2, "address": None, "scores": []}
    outputs = {
        AvroSerde(schema).serialize(user)
        for schema in (USER_V1, json.dumps(USER_V1), str(path), path)
    }
    assert len(outputs) == 1
    assert AvroSerde("long").serialize(1) == b"\x02"
    assert AvroSerde('"string"').serialize("a") == b"\x02a"


def test_missing_schema_file_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="neither JSON"):
        AvroSerde("/nonexistent/user.avsc")


@pytest.mark.parametrize(
    "bad",
    [{"name": "x"}, {"name": 1, "age": 1}, {"name": "x", "age": "1"}, "not a record"],
)
def test_bad_values_raise(bad) -> None:
    with pytest.raises(SerializationError, match="AvroSerde"):
        AvroSerde(USER_V1).serialize(bad, SerdeContext(topic="users"))


@pytest.mark.parametrize("age", [1.5, 2**40])
def test_validate_rejects_values_fastavro_would_coerce(age) -> None:
    value = {"name": "x", "age": age}
    with pytest.raises(SerializationError):
        AvroSerde(USER_V1, validate=True).serialize(value)


@pytest.mark.parametrize("data", [b"", b"\x02", b"\x02a\x02\x00\x00\x00", b"\x02a\x02\x09"])
def test_truncated_or_trailing_bytes_raise(data: bytes) -> None:
    with pytest.raises(SerializationError):
        AvroSerde(USER_V1).deserialize(data, SerdeContext(topic="t", partition=0, offset=1))


def test_none_is_tombstone() -> None:
    assert AvroSerde(USER_V1).serialize(None) is None
    assert AvroSerde(USER_V1).deserialize(None) is None
