"""C-level shortcuts for the built-in serdes on per-record paths (task sources, fused sinks,
key-value store writes).

Why: a serde call is a Python call per key and per value (a None check, a try, then the C
codec); for the common StringSerde and JsonSerde the caller can call the C codec itself. A
shortcut is only used for non-None data, and when it raises, the caller repeats the call
through the real serde (with its context), so results and errors are exactly the serde's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ._json import JsonSerde
from ._primitives import StringSerde

# bytes.decode: UTF-8, strict, a plain C method call (str(data, encoding=...) through
# functools.partial parsed its keyword on every record). It refuses bytearray/memoryview,
# which StringSerde takes: the caller then asks the serde, as for any shortcut error.
_UTF8: Callable[[bytes], str] = bytes.decode


def fast_deserializer(serde: Any) -> Callable[[bytes], Any] | None:
    """A C function equal to `serde.deserialize(data, ctx)` for non-None `data` that it
    decodes, or None when `serde` has no shortcut (subclasses never do: they may override).
    When it raises, the caller repeats the call through the serde, whose result or error
    counts."""
    kind = type(serde)
    if kind is StringSerde:
        return _UTF8
    if kind is JsonSerde and serde._convert is None:
        return orjson.loads
    return None


def fast_serializer(serde: Any) -> Callable[[Any], bytes] | None:
    """A C function equal to `serde.serialize(obj, ctx)` for non-None `obj` that encodes, or
    None when `serde` has no shortcut."""
    kind = type(serde)
    if kind is StringSerde:
        return str.encode  # UTF-8; a non-str raises, and the caller asks the serde
    if kind is JsonSerde and serde.default is None and serde.option is None:
        return orjson.dumps
    return None


def restores_bytes(deserializer: Any, serializer: Any) -> bool:
    """Whether `serializer(deserializer(data)) == data` for every `data` the deserializer
    decodes (shortcuts from this module), so the bytes a record came with can go out again
    unchanged. Only UTF-8 is a bijection here: strict decoding refuses every byte string
    that encoding would not give back. JSON is not (spacing, key order, number forms)."""
    return deserializer is _UTF8 and serializer is str.encode
