"""Public API surface: context, error type, resolve()."""

from __future__ import annotations

import pickle

import pytest

import serdes
from serdes import (
    BytesSerde,
    Int64Serde,
    JsonSerde,
    Serde,
    SerdeContext,
    SerializationError,
    StringSerde,
    TupleKeySerde,
)


def test_context_is_slotted_and_mutable() -> None:
    ctx = SerdeContext("t", 1, 2, [("h", b"v")])
    assert not hasattr(ctx, "__dict__")
    assert ctx.is_key is False
    ctx.offset = 3
    assert ctx.offset == 3


def test_error_copies_coordinates_and_does_not_keep_the_shared_context() -> None:
    ctx = SerdeContext(topic="a", partition=1, offset=10)
    with pytest.raises(SerializationError) as info:
        Int64Serde().deserialize(b"\x00", ctx)
    ctx.topic, ctx.partition, ctx.offset = "b", 2, 20  # engine reuses ctx for the next record
    err = info.value
    assert (err.topic, err.partition, err.offset) == ("a", 1, 10)
    assert str(err).startswith("int64 needs exactly 8 bytes (value of topic='a', partition=1")
    assert "serde=Int64Serde" in str(err) and "cause=error:" in str(err)
    assert isinstance(err.__cause__, Exception) and err.cause is err.__cause__
    assert all(value is not ctx for value in vars(err).values())


def test_error_signature_and_pickle() -> None:
    cause = ValueError("boom")
    err = SerializationError("bad", "topic", 0, 5, StringSerde(), cause)
    assert (err.message, err.serde_name, err.cause) == ("bad", "StringSerde", cause)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err)
    assert "topic='topic'" in str(err) and "offset=5" in str(err) and "ValueError: boom" in str(err)


def test_every_serde_satisfies_the_protocol() -> None:
    for name in serdes.SERDE_NAMES:
        assert isinstance(serdes.resolve(name), Serde), name


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("string", StringSerde),
        ("STRING", StringSerde),
        ("json", JsonSerde),
        ("int64", Int64Serde),
        ("long", Int64Serde),
        ("bytes", BytesSerde),
        ("tuple", TupleKeySerde),
        (None, BytesSerde),
        (StringSerde, StringSerde),
    ],
)
def test_resolve(spec, cls) -> None:
    assert type(serdes.resolve(spec)) is cls


def test_resolve_passes_instances_through_and_rejects_unknown() -> None:
    s = JsonSerde(dict)
    assert serdes.resolve(s) is s
    with pytest.raises(ValueError, match="known names"):
        serdes.resolve("protobuf")
    with pytest.raises(TypeError):
        serdes.resolve(42)  # type: ignore[arg-type]


def test_primitive_serdes_hold_no_state() -> None:
    for name in ("string", "int32", "int64", "float32", "float64", "uuid", "bytes", "tuple"):
        s = serdes.resolve(name)
        assert not hasattr(s, "__dict__"), name


def test_public_names_are_exported() -> None:
    for name in serdes.__all__:
        assert hasattr(serdes, name), name
