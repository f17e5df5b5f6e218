"""Windowed keys: topic layout (Java TimeWindowed compatible) and sortable store layout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serdes import (
    Int64Serde,
    SerdeContext,
    SerializationError,
    StringSerde,
    TupleKeySerde,
    Windowed,
    WindowedSerde,
    WindowStoreKeySerde,
)

millis = st.integers(min_value=-(2**62), max_value=2**62)
windows = st.builds(
    lambda k, s, size: Windowed(k, s, s + size), st.text(), millis, st.integers(1, 10**9)
)


@given(windows)
def test_topic_layout_roundtrip(w: Windowed) -> None:
    s = WindowedSerde(StringSerde())
    back = s.deserialize(s.serialize(w))
    assert back == w
    assert isinstance(back, Windowed)


def test_topic_layout_with_window_size_matches_java_time_windowed() -> None:
    # Java TimeWindowedSerializer: inner key bytes + 8-byte big-endian window start.
    s = WindowedSerde(StringSerde(), window_size_ms=60_000)
    data = s.serialize(Windowed("k", 120_000, 180_000))
    assert data == b"k" + (120_000).to_bytes(8, "big")
    assert s.deserialize(data) == Windowed("k", 120_000, 180_000)


def test_topic_layout_without_size_carries_end() -> None:
    data = WindowedSerde(Int64Serde()).serialize(Windowed(5, 10, 20))
    assert data == (5).to_bytes(8, "big") + (10).to_bytes(8, "big") + (20).to_bytes(8, "big")


@given(windows)
def test_store_layout_roundtrip(w: Windowed) -> None:
    s = WindowStoreKeySerde(StringSerde())
    assert s.deserialize(s.serialize(w)) == w


@given(st.lists(windows))
def test_store_layout_sorts_by_key_bytes_then_start(items: list[Windowed]) -> None:
    s = WindowStoreKeySerde(StringSerde())
    by_bytes = sorted(items, key=s.serialize)
    expected = sorted(items, key=lambda w: (w.key.encode(), w.start, w.end))
    assert by_bytes == expected


@given(st.lists(st.builds(Windowed, st.tuples(st.text(), st.integers()), millis, millis)))
def test_store_layout_over_ordered_inner_keys_sorts_like_values(items: list[Windowed]) -> None:
    s = WindowStoreKeySerde(TupleKeySerde())
    assert sorted(items, key=s.serialize) == sorted(items)


@given(st.text(), millis, millis, st.lists(windows))
def test_fetch_range_selects_key_and_start_interval(key, a, b, items) -> None:
    lo_start, hi_start = min(a, b), max(a, b)
    s = WindowStoreKeySerde(StringSerde())
    items = items + [Windowed(key, lo_start, lo_start + 1), Windowed(key + "x", lo_start, 0)]
    lo, hi = s.fetch_range(key, lo_start, hi_start)
    prefix = s.key_prefix(key)
    for w in items:
        enc = s.serialize(w)
        assert (lo <= enc < hi) == (w.key == key and lo_start <= w.start <= hi_start)
        assert enc.startswith(prefix) == (w.key == key)


def test_none_is_tombstone() -> None:
    for s in (WindowedSerde(StringSerde()), WindowStoreKeySerde(StringSerde())):
        assert s.serialize(None) is None
        assert s.deserialize(None) is None


def test_errors_name_the_record() -> None:
    ctx = SerdeContext(topic="win", partition=2, offset=9)
    with pytest.raises(SerializationError, match="'win'.*partition=2.*offset=9"):
        WindowedSerde(StringSerde()).deserialize(b"short", ctx)
    with pytest.raises(SerializationError, match="WindowStoreKeySerde"):
        WindowStoreKeySerde(StringSerde()).deserialize(b"\x99", ctx)
    with pytest.raises(SerializationError):
        WindowStoreKeySerde(StringSerde()).serialize(Windowed("k", 1.5, 2), ctx)
    with pytest.raises(SerializationError):
        WindowedSerde(StringSerde()).serialize(Windowed("k", 2**64, 2), ctx)
