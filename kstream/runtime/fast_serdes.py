"""C-level shortcuts for the built-in serdes on the per-record source path.

Why: a serde's `deserialize` is a Python call per key and per value (a None check, a try, then
the C decoder); for the common StringSerde and JsonSerde the task can call the C decoder
itself. A shortcut is only ever used for non-None data, and when it raises, the task repeats
the call through the real serde with full context, so errors read exactly as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from serdes import JsonSerde, StringSerde

_UTF8: Callable[[bytes], str] = functools.partial(str, encoding="utf-8")


def fast_deserializer(serde: Any) -> Callable[[bytes], Any] | None:
    """A C function equal to `serde.deserialize(data, ctx)` for non-None `data` that decodes,
    or None when `serde` has no shortcut (subclasses never do: they may override)."""
    kind = type(serde)
    if kind is StringSerde:
        return _UTF8
    if kind is JsonSerde and serde._convert is None:
        return orjson.loads
    return None
