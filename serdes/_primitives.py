"""Primitive serdes, byte-for-byte compatible with Kafka's Java serializers.

Java's Integer/Long/Float/DoubleSerializer write big-endian two's complement / IEEE 754;
StringSerializer writes UTF-8; UUIDSerializer writes ``uuid.toString()`` (lower-case,
hyphenated, 36 chars) as UTF-8. Each class is stateless and allocation-free apart from the
result, because these run once per record on the hot path.
"""

from __future__ import annotations

import struct
import uuid
from typing import Generic, TypeVar

from ._base import SerdeContext, serde_error

N = TypeVar("N")  # the number type of a fixed-width serde: int or float

__all__ = [
    "BytesSerde",
    "StringSerde",
    "Int32Serde",
    "Int64Serde",
    "Float32Serde",
    "Float64Serde",
    "UUIDSerde",
]

_UUID = uuid.UUID
_BYTES_LIKE = (bytearray, memoryview)


class _Stateless:
    """Common repr/equality for serdes that have no configuration."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


class BytesSerde(_Stateless):
    """Pass-through for raw bytes (Java ByteArraySerializer)."""

    __slots__ = ()

    def serialize(
        self, obj: bytes | bytearray | memoryview | None, ctx: SerdeContext | None = None
    ) -> bytes | None:
        """The bytes as they are (bytearray/memoryview copied to bytes); anything else is a
        SerializationError ("expected bytes, got dict": give the sink a serde)."""
        if obj is None or type(obj) is bytes:
            return obj
        if isinstance(obj, (bytes, *_BYTES_LIKE)):
            return bytes(obj)
        part = "key" if ctx is not None and ctx.is_key else "value"
        raise serde_error(self, f"expected bytes, got {type(obj).__name__}: give the topic a "
                          f"{part}_serde (e.g. \"json\") or set default_{part}_serde", ctx)

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> bytes | None:
        """The record bytes as they are."""
        if data is None or type(data) is bytes:
            return data
        return bytes(data)


class StringSerde(_Stateless):
    """UTF-8 text (Java StringSerializer with its default encoding). Invalid UTF-8 fails."""

    __slots__ = ()

    def serialize(self, obj: str | None, ctx: SerdeContext | None = None) -> bytes | None:
        """`obj` encoded as UTF-8; a non-str is a SerializationError."""
        if obj is None:
            return None
        try:
            return obj.encode("utf-8")
        except (AttributeError, UnicodeEncodeError) as exc:
            raise serde_error(
                self, f"cannot encode {type(obj).__name__} as UTF-8", ctx, exc
            ) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> str | None:
        """The UTF-8 text; invalid UTF-8 is a SerializationError."""
        if data is None:
            return None
        try:
            return str(data, "utf-8")
        except (UnicodeDecodeError, TypeError) as exc:
            raise serde_error(self, "invalid UTF-8", ctx, exc) from exc


class _StructSerde(_Stateless, Generic[N]):
    """Fixed-width number via a precompiled ``struct.Struct`` (one C call each way)."""

    __slots__ = ()
    _struct: struct.Struct
    _kind: str

    def serialize(self, obj: N | None, ctx: SerdeContext | None = None) -> bytes | None:
        """The number in its fixed-width big-endian form (as Java's serializer writes it);
        a value out of range or not a number is a SerializationError."""
        if obj is None:
            return None
        try:
            return self._struct.pack(obj)
        except (struct.error, TypeError, OverflowError) as exc:
            raise serde_error(self, f"cannot encode {obj!r} as {self._kind}", ctx, exc) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> N | None:
        """The number; data of the wrong length is a SerializationError."""
        if data is None:
            return None
        try:
            return self._struct.unpack(data)[0]
        except (struct.error, TypeError) as exc:
            raise serde_error(
                self, f"{self._kind} needs exactly {self._struct.size} bytes", ctx, exc
            ) from exc


class Int32Serde(_StructSerde[int]):
    """Java IntegerSerializer: 4 bytes, big-endian, signed."""

    __slots__ = ()
    _struct = struct.Struct(">i")
    _kind = "int32"


class Int64Serde(_StructSerde[int]):
    """Java LongSerializer: 8 bytes, big-endian, signed."""

    __slots__ = ()
    _struct = struct.Struct(">q")
    _kind = "int64"


class Float32Serde(_StructSerde[float]):
    """Java FloatSerializer: IEEE 754 binary32, big-endian (values are rounded to float32)."""

    __slots__ = ()
    _struct = struct.Struct(">f")
    _kind = "float32"


class Float64Serde(_StructSerde[float]):
    """Java DoubleSerializer: IEEE 754 binary64, big-endian."""

    __slots__ = ()
    _struct = struct.Struct(">d")
    _kind = "float64"


class UUIDSerde(_Stateless):
    """Java UUIDSerializer: the canonical 36-char string form, UTF-8 encoded.

    Accepts ``uuid.UUID`` or a string that parses as one (written in canonical form).
    """

    __slots__ = ()

    def serialize(
        self, obj: uuid.UUID | str | None, ctx: SerdeContext | None = None
    ) -> bytes | None:
        """The canonical UUID string, ASCII-encoded; a non-UUID is a SerializationError."""
        if obj is None:
            return None
        try:
            if type(obj) is not _UUID:
                obj = obj if isinstance(obj, _UUID) else _UUID(obj)
            return str(obj).encode("ascii")
        except (ValueError, TypeError, AttributeError) as exc:
            raise serde_error(self, f"not a UUID: {obj!r}", ctx, exc) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> uuid.UUID | None:
        """A ``uuid.UUID``; text that is not a UUID is a SerializationError."""
        if data is None:
            return None
        try:
            return _UUID(str(data, "ascii"))
        except (ValueError, TypeError) as exc:
            raise serde_error(self, "not a UUID string", ctx, exc) from exc
