"""Order-preserving key encoding for range-scanned state stores.

``encode_key(a) < encode_key(b)`` bytewise exactly when ``a < b`` in Python, for values of the
same type layout (ints with ints, strs with strs, tuples whose positions hold the same types).
Different types still get a fixed, total order by type tag, so mixed keys never collide.

Layout (one tag byte, then a self-delimiting body)::

    0x01 None        0x02 False      0x03 True
    0x05 bytes       0x06 str        body escaped (00 -> 00 FF), terminated by 00 01
    0x17 big negative int: (255 - n), ones' complement of the n-byte magnitude
    0x18..0x1F negative int of 8..1 bytes: ones' complement of the magnitude
    0x20 zero        0x21..0x28 positive int of 1..8 bytes, big-endian
    0x29 big positive int: n, then n bytes big-endian   (ints up to 255 bytes)
    0x40 float       8 bytes: IEEE 754 with sign flipped (negatives: all bits flipped)
    0x50 tuple       elements, then 00

Element encodings are prefix-free and never start with 00 or FF, so a tuple without its
closing 00 is a byte prefix of exactly the tuples that start with the same elements, and
``prefix + FF`` bounds that range above; see ``encode_key_prefix`` and ``prefix_range``.
"""

from __future__ import annotations

import struct
from typing import Any

from ._base import SerdeContext, serde_error

__all__ = ["encode_key", "decode_key", "encode_key_prefix", "prefix_range", "TupleKeySerde"]

KeyValue = Any  # None | bool | int | float | str | bytes | tuple[KeyValue, ...]

_NONE, _FALSE, _TRUE = b"\x01", b"\x02", b"\x03"
_T_BYTES, _T_STR = 0x05, 0x06
_T_BIGNEG, _T_ZERO, _T_BIGPOS = 0x17, 0x20, 0x29
_T_FLOAT, _T_TUPLE = 0x40, 0x50
_END = b"\x00"
_TERM = b"\x00\x01"
_ESC = b"\x00\xff"
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_D = struct.Struct(">d")
_Q = struct.Struct(">Q")
_SINGLE = tuple(bytes((i,)) for i in range(256))


def _enc_int(v: int, out: list[bytes]) -> None:
    if v > 0:
        n = (v.bit_length() + 7) >> 3
        if n <= 8:
            out.append(_SINGLE[_T_ZERO + n])
        elif n <= 255:
            out.append(bytes((_T_BIGPOS, n)))
        else:
            raise ValueError("int too large for key encoding (max 255 bytes)")
        out.append(v.to_bytes(n, "big"))
    elif v < 0:
        m = -v
        n = (m.bit_length() + 7) >> 3
        if n <= 8:
            out.append(_SINGLE[_T_ZERO - n])
        elif n <= 255:
            out.append(bytes((_T_BIGNEG, 255 - n)))
        else:
            raise ValueError("int too large for key encoding (max 255 bytes)")
        out.append(((1 << (n << 3)) - 1 - m).to_bytes(n, "big"))
    else:
        out.append(_SINGLE[_T_ZERO])


def _enc_float(v: float) -> bytes:
    if v == 0.0:
        v = 0.0  # -0.0 == 0.0 in Python, so they must be the same key
    elif v != v:
        v = float("nan")  # one canonical NaN (sorts after +inf)
    u = _Q.unpack(_D.pack(v))[0]
    u = u ^ _ALL if u & _SIGN else u | _SIGN
    return b"\x40" + _Q.pack(u)


def _enc(v: Any, out: list[bytes]) -> None:
    t = type(v)
    if t is str:
        out.append(b"\x06")
        out.append(v.encode("utf-8", "surrogatepass").replace(_END, _ESC))
        out.append(_TERM)
    elif t is int:
        _enc_int(v, out)
    elif t is tuple:
        out.append(b"\x50")
        for item in v:
            _enc(item, out)
        out.append(_END)
    elif t is bytes:
        out.append(b"\x05")
        out.append(v.replace(_END, _ESC))
        out.append(_TERM)
    elif v is None:
        out.append(_NONE)
    elif t is bool:
        out.append(_TRUE if v else _FALSE)
    elif t is float:
        out.append(_enc_float(v))
    elif isinstance(v, bool):
        out.append(_TRUE if v else _FALSE)
    elif isinstance(v, int):
        _enc_int(int(v), out)
    elif isinstance(v, str):
        _enc(str(v), out)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _enc(bytes(v), out)
    elif isinstance(v, float):
        out.append(_enc_float(float(v)))
    elif isinstance(v, tuple):
        _enc(tuple(v), out)
    else:
        raise TypeError(f"unsupported key type {t.__name__}")


def encode_key(value: KeyValue) -> bytes:
    """Encode a scalar or (nested) tuple so that bytewise order equals Python order."""
    t = type(value)
    # Fast paths for the common single-scalar keys.
    if t is str:
        return b"\x06" + value.encode("utf-8", "surrogatepass").replace(_END, _ESC) + _TERM
    if t is bytes:
        return b"\x05" + value.replace(_END, _ESC) + _TERM
    out: list[bytes] = []
    _enc(value, out)
    return b"".join(out)


def encode_key_prefix(prefix: tuple[KeyValue, ...]) -> bytes:
    """Byte prefix of exactly the tuple keys that start with ``prefix`` (for prefix scans)."""
    if type(prefix) is not tuple:
        raise TypeError("prefix must be a tuple")
    out: list[bytes] = [b"\x50"]
    for item in prefix:
        _enc(item, out)
    return b"".join(out)


def prefix_range(prefix: tuple[KeyValue, ...]) -> tuple[bytes, bytes]:
    """``(lo, hi)`` so that lo <= encode_key(k) < hi iff tuple k starts with ``prefix``."""
    lo = encode_key_prefix(prefix)
    return lo, lo + b"\xff"


def _dec_escaped(data: bytes, pos: int) -> tuple[bytes, int]:
    start = pos
    while True:
        i = data.find(0, pos)
        nxt = data[i + 1] if 0 <= i < len(data) - 1 else -1
        if nxt == 0xFF:
            pos = i + 2
        elif nxt == 0x01:
            raw = data[start:i]
            return (raw.replace(_ESC, _END) if pos != start else raw), i + 2
        else:
            raise ValueError("bad escape or unterminated bytes/str in key")


def _dec(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag == _T_STR:
        raw, pos = _dec_escaped(data, pos)
        return raw.decode("utf-8", "surrogatepass"), pos
    if _T_BIGNEG <= tag <= _T_BIGPOS:
        if tag == _T_ZERO:
            return 0, pos
        if tag > _T_ZERO:
            if tag == _T_BIGPOS:
                n = data[pos]
                pos += 1
                if n <= 8:
                    raise ValueError("non-canonical big int in key")
            else:
                n = tag - _T_ZERO
            end = pos + n
            if end > len(data):
                raise ValueError("truncated int in key")
            return int.from_bytes(data[pos:end], "big"), end
        if tag == _T_BIGNEG:
            n = 255 - data[pos]
            pos += 1
            if n <= 8:
                raise ValueError("non-canonical big int in key")
        else:
            n = _T_ZERO - tag
        end = pos + n
        if end > len(data):
            raise ValueError("truncated int in key")
        return int.from_bytes(data[pos:end], "big") - ((1 << (n << 3)) - 1), end
    if tag == _T_TUPLE:
        items: list[Any] = []
        while True:
            if pos >= len(data):
                raise ValueError("unterminated tuple in key")
            if data[pos] == 0:
                return tuple(items), pos + 1
            item, pos = _dec(data, pos)
            items.append(item)
    if tag == _T_BYTES:
        return _dec_escaped(data, pos)
    if tag == 0x01:
        return None, pos
    if tag == 0x02:
        return False, pos
    if tag == 0x03:
        return True, pos
    if tag == _T_FLOAT:
        end = pos + 8
        if end > len(data):
            raise ValueError("truncated float in key")
        u = _Q.unpack_from(data, pos)[0]
        u = u ^ _SIGN if u & _SIGN else u ^ _ALL
        return _D.unpack(_Q.pack(u))[0], end
    raise ValueError(f"unknown key type tag 0x{tag:02x}")


def decode_key(data: bytes) -> KeyValue:
    """Inverse of ``encode_key``; rejects trailing or truncated bytes."""
    if type(data) is not bytes:
        data = bytes(data)
    if not data:
        raise ValueError("empty key encoding")
    value, pos = _dec(data, 0)
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes after key")
    return value


class TupleKeySerde:
    """Serde over ``encode_key``/``decode_key`` for store keys that must range-scan in order.

    ``None`` stays ``None`` (tombstone) at the top level; ``None`` inside a tuple is encoded.
    """

    __slots__ = ()

    def serialize(self, obj: KeyValue, ctx: SerdeContext | None = None) -> bytes | None:
        """``encode_key(obj)``: bytes that sort like the key (tuples element by element)."""
        if obj is None:
            return None
        try:
            return encode_key(obj)
        except (TypeError, ValueError, UnicodeError) as exc:
            raise serde_error(self, f"cannot encode key {obj!r}", ctx, exc) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> KeyValue:
        """``decode_key(data)``: the key as it was encoded (tuples stay tuples)."""
        if data is None:
            return None
        try:
            return decode_key(data)
        except (TypeError, ValueError, IndexError, UnicodeError, struct.error) as exc:
            raise serde_error(self, "invalid ordered key encoding", ctx, exc) from exc

    def __repr__(self) -> str:
        return "TupleKeySerde()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))
