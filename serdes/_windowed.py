"""Windowed keys: ``(key, start_ms, end_ms)`` for windowed aggregations and window stores.

Two layouts, because topics and stores want different things:

* ``WindowedSerde`` (topics): inner key bytes followed by big-endian int64 timestamps. With
  ``window_size_ms`` it writes ``key + start`` exactly like Java's TimeWindowedSerializer and
  derives ``end = start + size`` on read; without it, ``key + start + end``.
* ``WindowStoreKeySerde`` (stores): the order-preserving tuple encoding of
  ``(inner key bytes, start, end)``, so a store range-scans by (key, start); ``fetch_range``
  gives the bounds for "this key, windows starting in [from, to]".
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from ._base import Serde, SerdeContext, serde_error
from ._keys import decode_key, encode_key, encode_key_prefix

__all__ = ["Windowed", "WindowedSerde", "WindowStoreKeySerde"]

_Q2 = struct.Struct(">qq")
_Q1 = struct.Struct(">q")


class Windowed(NamedTuple):
    """A key together with the window it belongs to (epoch milliseconds, end exclusive)."""

    key: Any
    start: int
    end: int


class WindowedSerde:
    """Topic layout of a windowed key (see module docstring)."""

    __slots__ = ("inner", "window_size_ms")

    def __init__(self, inner_key_serde: Serde, window_size_ms: int | None = None) -> None:
        if window_size_ms is not None and window_size_ms <= 0:
            raise ValueError("window_size_ms must be positive")
        self.inner = inner_key_serde
        self.window_size_ms = window_size_ms

    def serialize(self, obj: Windowed | None, ctx: SerdeContext | None = None) -> bytes | None:
        """Inner key bytes, then the window start (and end, without `window_size_ms`) as
        big-endian int64, as Kafka Streams' windowed serdes write them."""
        if obj is None:
            return None
        kb, start, end = _split(self, obj, ctx)
        try:
            if self.window_size_ms is None:
                return kb + _Q2.pack(start, end)
            return kb + _Q1.pack(start)
        except (struct.error, TypeError) as exc:
            raise serde_error(self, f"bad window bounds {start!r}, {end!r}", ctx, exc) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Windowed | None:
        """`Windowed(key, start, end)`; with `window_size_ms` the end is start + size."""
        if data is None:
            return None
        size = self.window_size_ms
        if size is None:
            if len(data) < 16:
                raise serde_error(self, "windowed key shorter than 16 bytes", ctx)
            start, end = _Q2.unpack_from(data, len(data) - 16)
            kb = data[:-16]
        else:
            if len(data) < 8:
                raise serde_error(self, "windowed key shorter than 8 bytes", ctx)
            start = _Q1.unpack_from(data, len(data) - 8)[0]
            end = start + size
            kb = data[:-8]
        return Windowed(self.inner.deserialize(kb, ctx), start, end)

    def __repr__(self) -> str:
        return f"WindowedSerde({self.inner!r}, window_size_ms={self.window_size_ms})"


class WindowStoreKeySerde:
    """Store layout: sorts by (inner key bytes, start, end) so stores can range-scan."""

    __slots__ = ("inner",)

    def __init__(self, inner_key_serde: Serde) -> None:
        self.inner = inner_key_serde

    def serialize(self, obj: Windowed | None, ctx: SerdeContext | None = None) -> bytes | None:
        """The ordered store key of (inner key bytes, start, end)."""
        if obj is None:
            return None
        kb, start, end = _split(self, obj, ctx)
        if type(start) is not int or type(end) is not int:
            raise serde_error(self, f"window bounds must be int, got {start!r}, {end!r}", ctx)
        try:
            return encode_key((kb, start, end))
        except (TypeError, ValueError) as exc:
            raise serde_error(self, f"cannot encode windowed key {obj!r}", ctx, exc) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Windowed | None:
        """`Windowed(key, start, end)` from a store key."""
        if data is None:
            return None
        try:
            kb, start, end = decode_key(data)
        except (TypeError, ValueError, IndexError, UnicodeError, struct.error) as exc:
            raise serde_error(self, "invalid window store key", ctx, exc) from exc
        return Windowed(self.inner.deserialize(kb, ctx), start, end)

    def key_prefix(self, key: Any, ctx: SerdeContext | None = None) -> bytes:
        """Bytes every store key of ``key`` (any window) starts with."""
        kb = self.inner.serialize(key, ctx)
        if kb is None:
            raise serde_error(self, "inner key serde returned None for a windowed key", ctx)
        return encode_key_prefix((kb,))

    def fetch_range(
        self, key: Any, start_from: int, start_to: int, ctx: SerdeContext | None = None
    ) -> tuple[bytes, bytes]:
        """``(lo, hi)``: store keys of ``key`` whose window start is in [start_from, start_to]."""
        kb = self.inner.serialize(key, ctx)
        if kb is None:
            raise serde_error(self, "inner key serde returned None for a windowed key", ctx)
        return encode_key_prefix((kb, start_from)), encode_key_prefix((kb, start_to)) + b"\xff"

    def __repr__(self) -> str:
        return f"WindowStoreKeySerde({self.inner!r})"


def _split(serde: Any, obj: Any, ctx: SerdeContext | None) -> tuple[bytes, Any, Any]:
    """(inner key bytes, start, end) of a Windowed, or a SerializationError naming `serde`."""
    try:
        key, start, end = obj
    except (TypeError, ValueError) as exc:
        raise serde_error(serde, "expected Windowed(key, start, end)", ctx, exc) from exc
    kb = serde.inner.serialize(key, ctx)
    if kb is None:
        raise serde_error(serde, "inner key serde returned None for a windowed key", ctx)
    return kb, start, end
