"""Order-preserving key encoding: bytewise order of encodings == Python order of values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serdes import (
    SerdeContext,
    SerializationError,
    TupleKeySerde,
    decode_key,
    encode_key,
    encode_key_prefix,
    prefix_range,
)

big_ints = st.integers(min_value=-(2**2000), max_value=2**2000)
ints = st.one_of(st.integers(min_value=-(2**64), max_value=2**64), big_ints)
texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()))  # incl. surrogates
floats = st.floats(allow_nan=False)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)


def assert_sorts_like_values(items: list) -> None:
    by_value = sorted(items)
    by_bytes = sorted(items, key=encode_key)
    assert by_bytes == by_value
    # And the decoded encodings sort the same way, pairwise strictness included.
    for a, b in zip(by_bytes, by_bytes[1:], strict=False):
        if a < b:
            assert encode_key(a) < encode_key(b)
        else:
            assert encode_key(a) == encode_key(b)


@given(values)
def test_roundtrip_any_value(value) -> None:
    back = decode_key(encode_key(value))
    assert back == value
    assert type(back) is type(value)


@given(st.lists(ints))
def test_ints_sort_like_values(items: list[int]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(texts))
def test_strs_sort_like_values(items: list[str]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(st.binary()))
def test_bytes_sort_like_values(items: list[bytes]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(floats))
def test_floats_sort_like_values(items: list[float]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(st.booleans()))
def test_bools_sort_like_values(items: list[bool]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(st.tuples(texts, ints, st.binary())))
def test_tuples_sort_like_values(items: list[tuple[str, int, bytes]]) -> None:
    assert_sorts_like_values(items)


@given(st.lists(st.lists(st.tuples(ints, texts).map(tuple), max_size=3).map(tuple)))
def test_variable_length_nested_tuples_sort_like_values(items: list[tuple]) -> None:
    # Shorter tuples sort before their extensions, exactly as in Python.
    assert_sorts_like_values(items)


@given(st.lists(st.tuples(floats, st.booleans(), texts)))
def test_mixed_tuple_layout_sort_like_values(items: list[tuple[float, bool, str]]) -> None:
    assert_sorts_like_values(items)


@pytest.mark.parametrize(
    "ordered",
    [
        [-(2**64), -(2**63) - 1, -(2**63), -257, -256, -255, -1, 0, 1, 255, 256, 2**63, 2**64],
        ["", "\x00", "\x00\x00", "\x01", "a", "a\x00", "ab", "\uffff", "\U0001f600"],
        [b"", b"\x00", b"\x00\xff", b"\x01", b"\xff", b"\xff\x00"],
        [float("-inf"), -1e308, -1.0, -5e-324, 0.0, 5e-324, 1.0, float("inf")],
        [(), ("a",), ("a", 1), ("a", 2), ("a", 2, "x"), ("b",)],
    ],
)
def test_known_orders(ordered: list) -> None:
    encoded = [encode_key(v) for v in ordered]
    assert encoded == sorted(encoded)
    assert len(set(encoded)) == len(encoded)


def test_negative_zero_is_the_same_key_as_zero() -> None:
    assert encode_key(-0.0) == encode_key(0.0)
    assert encode_key((1, -0.0)) == encode_key((1, 0.0))


@given(st.tuples(texts, ints), st.lists(st.tuples(texts, ints, texts)))
def test_prefix_range_selects_exactly_the_extensions(prefix, keys) -> None:
    keys = keys + [prefix + ("x",), prefix + ("",), prefix]
    lo, hi = prefix_range(prefix)
    for key in keys:
        inside = lo <= encode_key(key) < hi
        assert inside == (key[: len(prefix)] == prefix), key


def test_prefix_bytes_are_a_prefix_of_longer_keys() -> None:
    p = encode_key_prefix(("user", 7))
    assert encode_key(("user", 7, "a")).startswith(p)
    assert not encode_key(("user", 70, "a")).startswith(p)
    assert not encode_key(("user\x00", 7)).startswith(encode_key_prefix(("user",)))
    assert not encode_key((b"k\x00", 7)).startswith(encode_key_prefix((b"k",)))


@given(st.tuples(texts, st.binary()), st.lists(st.tuples(texts, st.binary(), ints)))
def test_prefix_startswith_is_exact(prefix, keys) -> None:
    p = encode_key_prefix(prefix)
    for key in [*keys, prefix + (1,), (prefix[0] + "\x00", prefix[1], 1)]:
        assert encode_key(key).startswith(p) == (key[:2] == prefix)


@given(values.filter(lambda v: v is not None))
def test_tuple_key_serde_roundtrip(value) -> None:
    s = TupleKeySerde()
    assert s.deserialize(s.serialize(value)) == value


def test_tuple_key_serde_none_is_tombstone() -> None:
    s = TupleKeySerde()
    assert s.serialize(None) is None
    assert s.deserialize(None) is None
    assert decode_key(encode_key((None,))) == (None,)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x99",
        b"\x06abc",
        b"\x06a\x00",
        b"\x06a\x00\x02",
        b"\x50\x21",
        b"\x22\x01",
        b"\x40\x00",
        b"\x20\x20",
    ],
)
def test_invalid_encodings_raise(data: bytes) -> None:
    ctx = SerdeContext(topic="store-changelog", partition=1, offset=5)
    with pytest.raises(SerializationError, match="store-changelog"):
        TupleKeySerde().deserialize(data, ctx)


@pytest.mark.parametrize("bad", [object(), 2**3000, [1, 2], {"a": 1}])
def test_unsupported_values_raise(bad) -> None:
    with pytest.raises(SerializationError, match="TupleKeySerde"):
        TupleKeySerde().serialize(bad, SerdeContext(topic="t"))
