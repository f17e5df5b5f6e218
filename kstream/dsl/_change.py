"""How table updates travel between table operators: `Change(old, new)`.

Why: a table operator downstream of another needs the value a key had before the update as
well as the new one. Re-grouping subtracts the old value from its old group; a filter must
not forward a delete for a key it never forwarded; a join computes the result the key had.
So, as in Kafka Streams, every table node forwards `Change(old, new)` records (None: absent)
and `to_stream()` unwraps them into plain values (the public stream of a table carries new
values, None for deletes). Windowed aggregation results are the one exception: their nodes
forward plain values (their Table has `changes=False`).
"""

from __future__ import annotations

import struct
from typing import Any

from kstream.dsl._ops import _Operator
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult
from serdes import Serde, SerdeContext

_LEN = struct.Struct(">I")
_NEW, _OLD = 1, 2


class Change:
    """A table update of one key: the value before (`old`) and after (`new`); None: absent."""

    __slots__ = ("old", "new")

    def __init__(self, old: Any, new: Any) -> None:
        self.old = old
        self.new = new

    def __repr__(self) -> str:
        return f"Change(old={self.old!r}, new={self.new!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return self.old == other.old and self.new == other.new

    __hash__ = None  # type: ignore[assignment]


class ChangeSerde:
    """A Change on a repartition topic (table re-grouping): flags byte, then the value(s).

    Layout: flags (1 = new present, 2 = old present), then the one present value's bytes, or
    for both: 4-byte length of old, old, new. Values are encoded with the inner serde.
    """

    def __init__(self, inner: Serde) -> None:
        self.inner = inner

    def serialize(self, obj: Change | None, ctx: SerdeContext | None = None) -> bytes | None:
        if obj is None:
            return None
        ser = self.inner.serialize
        old = None if obj.old is None else ser(obj.old, ctx) or b""
        new = None if obj.new is None else ser(obj.new, ctx) or b""
        if old is not None and new is not None:
            return bytes((_NEW | _OLD,)) + _LEN.pack(len(old)) + old + new
        if new is not None:
            return bytes((_NEW,)) + new
        if old is not None:
            return bytes((_OLD,)) + old
        return bytes((0,))

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Change | None:
        if data is None:
            return None
        de = self.inner.deserialize
        flags = data[0]
        if flags == _NEW | _OLD:
            (n,) = _LEN.unpack_from(data, 1)
            return Change(de(data[5:5 + n], ctx), de(data[5 + n:], ctx))
        if flags == _NEW:
            return Change(None, de(data[1:], ctx))
        if flags == _OLD:
            return Change(de(data[1:], ctx), None)
        return Change(None, None)


class ToStreamOp(_Operator, Fusable):
    """`Table.to_stream()`: the new value of each change (None: the key was deleted)."""

    def process(self, record: Record) -> None:
        record.value = record.value.new
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        em.unwrap_change(depth)  # right after a fused aggregation: its new value, no Change
        return FuseResult(depth, skip)
