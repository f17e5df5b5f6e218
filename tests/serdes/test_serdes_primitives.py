"""Primitive serdes: Java-compatible bytes, round-trips, tombstones, errors."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serdes import (
    BytesSerde,
    Float32Serde,
    Float64Serde,
    Int32Serde,
    Int64Serde,
    SerdeContext,
    SerializationError,
    StringSerde,
    UUIDSerde,
)

ALL = [
    BytesSerde(),
    StringSerde(),
    Int32Serde(),
    Int64Serde(),
    Float32Serde(),
    Float64Serde(),
    UUIDSerde(),
]


# Byte strings produced by the Java serializers of kafka-clients for the same values
# (IntegerSerializer, LongSerializer, FloatSerializer, DoubleSerializer, StringSerializer,
# UUIDSerializer).
@pytest.mark.parametrize(
    ("serde", "value", "hex_bytes"),
    [
        (Int32Serde(), 1, "00000001"),
        (Int32Serde(), -1, "ffffffff"),
        (Int32Serde(), 2**31 - 1, "7fffffff"),
        (Int32Serde(), -(2**31), "80000000"),
        (Int64Serde(), 256, "0000000000000100"),
        (Int64Serde(), -1, "ffffffffffffffff"),
        (Int64Serde(), -(2**63), "8000000000000000"),
        (Float64Serde(), 1.0, "3ff0000000000000"),
        (Float64Serde(), -2.5, "c004000000000000"),
        (Float32Serde(), 1.5, "3fc00000"),
        (Float32Serde(), -0.0, "80000000"),
        (StringSerde(), "é", "c3a9"),
        (StringSerde(), "", ""),
        (StringSerde(), "a€𝄞", "61e282acf09d849e"),
        (BytesSerde(), b"\x00\xff", "00ff"),
        (
            UUIDSerde(),
            uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
            "31323365343536372d653839622d313264332d613435362d343236363134313734303030",
        ),
    ],
)
def test_matches_java_serializer_bytes(serde, value, hex_bytes: str) -> None:
    data = serde.serialize(value)
    assert data == bytes.fromhex(hex_bytes)
    back = serde.deserialize(data)
    assert back == value


def test_uuid_is_written_lowercase_canonical_like_java_tostring() -> None:
    u = uuid.UUID("123E4567-E89B-12D3-A456-426614174000")
    assert UUIDSerde().serialize(u) == b"123e4567-e89b-12d3-a456-426614174000"
    # A string is accepted and normalised the same way.
    assert UUIDSerde().serialize("{123E4567-E89B-12D3-A456-426614174000}") == UUIDSerde().serialize(
        u
    )


@pytest.mark.parametrize("serde", ALL, ids=lambda s: type(s).__name__)
def test_none_is_tombstone_both_ways(serde) -> None:
    assert serde.serialize(None) is None
    assert serde.deserialize(None) is None


@given(st.binary())
def test_bytes_roundtrip(value: bytes) -> None:
    s = BytesSerde()
    assert s.deserialize(s.serialize(value)) == value
    assert s.serialize(bytearray(value)) == value


@given(st.text())
def test_string_roundtrip(value: str) -> None:
    s = StringSerde()
    assert s.deserialize(s.serialize(value)) == value


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_int32_roundtrip(value: int) -> None:
    s = Int32Serde()
    data = s.serialize(value)
    assert data == value.to_bytes(4, "big", signed=True)
    assert s.deserialize(data) == value


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_int64_roundtrip(value: int) -> None:
    s = Int64Serde()
    data = s.serialize(value)
    assert data == value.to_bytes(8, "big", signed=True)
    assert s.deserialize(data) == value


@given(st.floats(width=32))
def test_float32_roundtrip(value: float) -> None:
    s = Float32Serde()
    back = s.deserialize(s.serialize(value))
    assert back == value or (math.isnan(back) and math.isnan(value))


@given(st.floats())
def test_float64_roundtrip(value: float) -> None:
    s = Float64Serde()
    back = s.deserialize(s.serialize(value))
    assert back == value or (math.isnan(back) and math.isnan(value))


@given(st.uuids())
def test_uuid_roundtrip(value: uuid.UUID) -> None:
    s = UUIDSerde()
    data = s.serialize(value)
    assert len(data) == 36
    assert s.deserialize(data) == value


@pytest.mark.parametrize(
    ("serde", "bad"),
    [
        (Int32Serde(), 2**31),
        (Int32Serde(), "1"),
        (Int64Serde(), 2**63),
        (Float64Serde(), "x"),
        (StringSerde(), b"bytes"),
        (StringSerde(), "\ud800"),
        (BytesSerde(), "text"),
        (UUIDSerde(), "not-a-uuid"),
    ],
)
def test_serialize_errors_name_the_record(serde, bad) -> None:
    ctx = SerdeContext(topic="orders", partition=3, offset=42)
    with pytest.raises(SerializationError) as info:
        serde.serialize(bad, ctx)
    err = info.value
    assert (err.topic, err.partition, err.offset) == ("orders", 3, 42)
    text = str(err)
    for part in ("orders", "3", "42", type(serde).__name__):
        assert part in text


@pytest.mark.parametrize(
    ("serde", "data"),
    [
        (Int32Serde(), b"\x00\x01"),
        (Int32Serde(), b"\x00\x00\x00\x00\x00"),
        (Int64Serde(), b"\x00" * 4),
        (Float32Serde(), b""),
        (Float64Serde(), b"\x00" * 9),
        (StringSerde(), b"\xff\xfe"),
        (UUIDSerde(), b"123"),
    ],
)
def test_deserialize_errors_never_return_garbage(serde, data: bytes) -> None:
    ctx = SerdeContext(topic="t", partition=0, offset=7, is_key=True)
    with pytest.raises(SerializationError) as info:
        serde.deserialize(data, ctx)
    assert info.value.offset == 7
    assert info.value.cause is not None
    assert "key" in str(info.value)
