"""Pick a serde by name, for config files and the CLI."""

from __future__ import annotations

from collections.abc import Callable

from ._base import Serde
from ._json import JsonSerde
from ._keys import TupleKeySerde
from ._primitives import (
    BytesSerde,
    Float32Serde,
    Float64Serde,
    Int32Serde,
    Int64Serde,
    StringSerde,
    UUIDSerde,
)

__all__ = ["resolve", "SERDE_NAMES"]

_FACTORIES: dict[str, Callable[[], Serde]] = {
    "bytes": BytesSerde,
    "bytearray": BytesSerde,
    "string": StringSerde,
    "str": StringSerde,
    "utf8": StringSerde,
    "utf-8": StringSerde,
    "int32": Int32Serde,
    "int": Int32Serde,
    "integer": Int32Serde,
    "int64": Int64Serde,
    "long": Int64Serde,
    "float32": Float32Serde,
    "float": Float32Serde,
    "float64": Float64Serde,
    "double": Float64Serde,
    "uuid": UUIDSerde,
    "json": JsonSerde,
    "tuple": TupleKeySerde,
    "tuple_key": TupleKeySerde,
    "ordered_key": TupleKeySerde,
}

SERDE_NAMES: frozenset[str] = frozenset(_FACTORIES)
"""Names accepted by ``resolve`` (case-insensitive). Java-style names map like Kafka's Serdes."""


def resolve(spec: str | Serde | type | None) -> Serde:
    """Turn a name, serde class or serde instance into a serde; ``None`` means raw bytes.

    Avro serdes need a schema (and a registry), so they are built explicitly, not by name.
    """
    if spec is None:
        return BytesSerde()
    if isinstance(spec, str):
        factory = _FACTORIES.get(spec.strip().lower())
        if factory is None:
            raise ValueError(
                f"unknown serde {spec!r}; known names: {', '.join(sorted(_FACTORIES))}"
            )
        return factory()
    if isinstance(spec, type):
        spec = spec()
    if callable(getattr(spec, "serialize", None)) and callable(getattr(spec, "deserialize", None)):
        return spec  # type: ignore[return-value]
    raise TypeError(f"not a serde: {spec!r} (needs serialize() and deserialize())")
