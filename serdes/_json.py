"""JSON via orjson, optionally decoding into a (nested) dataclass.

orjson already writes dataclasses, datetimes, UUIDs and enums natively and fast. For reading
into a type, a converter is compiled once from the type hints at construction time, so the
per-record cost is plain dict/list walking with no reflection.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar, Union

import orjson

from ._base import SerdeContext, serde_error

__all__ = ["JsonSerde"]

T = TypeVar("T")
Converter = Callable[[Any], Any]


def _identity_check(tp: type) -> Converter:
    def check(v: Any) -> Any:
        if isinstance(v, tp):
            return v
        raise TypeError(f"expected {tp.__name__}, got {type(v).__name__}")

    return check


def _float(v: Any) -> float:
    # JSON does not distinguish 1 from 1.0; orjson reads 1 as int.
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise TypeError(f"expected float, got {type(v).__name__}")


def _from_str(parse: Callable[[str], Any], name: str) -> Converter:
    def conv(v: Any) -> Any:
        if type(v) is not str:
            raise TypeError(f"expected {name} string, got {type(v).__name__}")
        return parse(v)

    return conv


def _build(tp: Any, seen: dict[Any, Converter]) -> Converter | None:
    """Converter from decoded JSON to ``tp``; ``None`` means "leave the value as it is"."""
    if tp is Any or tp is object or tp is None or tp is type(None):
        return None
    if tp in seen:
        return seen[tp]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build_dataclass(tp, seen)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            inner = _build(non_none[0], seen)
            if inner is None:
                return None
            return lambda v: None if v is None else inner(v)
        return None  # general unions: no unambiguous target, keep the JSON value
    if origin is typing.Literal:
        return None
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        container = origin or tp
        if container is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],)
        elif container is tuple and args:
            convs = [_build(a, seen) or (lambda v: v) for a in args]
            return lambda v: tuple(c(x) for c, x in zip(convs, v, strict=True))
        item = _build(args[0], seen) if args else None
        if item is None:
            return None if container is list else container
        if container is list:
            return lambda v: [item(x) for x in v]
        return lambda v: container(item(x) for x in v)
    if origin is dict or tp is dict:
        kconv = _build(args[0], seen) if args and args[0] is not str else None
        vconv = _build(args[1], seen) if len(args) > 1 else None
        if kconv is None and vconv is None:
            return None
        kc = kconv or (lambda k: k)
        vc = vconv or (lambda x: x)
        return lambda v: {kc(k): vc(x) for k, x in v.items()}
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return tp
        if tp is dt.datetime:
            return _from_str(dt.datetime.fromisoformat, "datetime")
        if tp is dt.date:
            return _from_str(dt.date.fromisoformat, "date")
        if tp is dt.time:
            return _from_str(dt.time.fromisoformat, "time")
        if tp is uuid.UUID:
            return _from_str(uuid.UUID, "UUID")
        if tp is float:
            return _float
        if tp is bool or tp is int or tp is str:
            return _identity_check(tp)
        if tp is dict or tp is list:
            return _identity_check(tp)
    return None


def _build_dataclass(cls: type, seen: dict[Any, Converter]) -> Converter:
    fields: list[tuple[str, Converter | None]] = []

    def conv(v: Any) -> Any:
        if type(v) is not dict:
            raise TypeError(f"expected object for {cls.__name__}, got {type(v).__name__}")
        kwargs = {}
        for name, fc in fields:
            if name in v:
                x = v[name]
                kwargs[name] = x if fc is None else fc(x)
        return cls(**kwargs)

    seen[cls] = conv  # registered before recursing so self-referencing types terminate
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # e.g. string annotations naming function-local classes
        hints = {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}
    for f in dataclasses.fields(cls):
        if f.init:
            fields.append((f.name, _build(hints.get(f.name, Any), seen)))
    return conv


class JsonSerde(Generic[T]):
    """JSON text via orjson. With ``type_`` (e.g. a dataclass), decodes into that type.

    ``option`` / ``default`` are passed to ``orjson.dumps`` (e.g. ``orjson.OPT_NON_STR_KEYS``).
    Unknown JSON fields are ignored and missing ones fall back to dataclass defaults, so
    producers and consumers can evolve independently.
    """

    __slots__ = ("type_", "option", "default", "_convert")

    def __init__(
        self,
        type_: type[T] | Any | None = None,
        *,
        option: int | None = None,
        default: Callable[[Any], Any] | None = None,
    ) -> None:
        self.type_ = type_
        self.option = option
        self.default = default
        self._convert: Converter | None = None if type_ is None else _build(type_, {})

    def serialize(self, obj: T | None, ctx: SerdeContext | None = None) -> bytes | None:
        """`obj` as UTF-8 JSON (orjson: dataclasses, datetimes, UUIDs too); an unencodable
        value is a SerializationError. Reading it back gives JSON's types unless `type_`
        says otherwise (a datetime comes back a str)."""
        if obj is None:
            return None
        try:
            return orjson.dumps(obj, self.default, self.option)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise serde_error(
                self, f"cannot encode {type(obj).__name__} as JSON", ctx, exc
            ) from exc

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> T | None:
        """The parsed JSON, converted to `type_` when one was given; invalid JSON or JSON that
        does not fit `type_` is a SerializationError."""
        if data is None:
            return None
        try:
            value = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise serde_error(self, "invalid JSON", ctx, exc) from exc
        conv = self._convert
        if conv is None:
            return value
        try:
            return conv(value)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            name = getattr(self.type_, "__name__", repr(self.type_))
            raise serde_error(self, f"JSON does not fit {name}", ctx, exc) from exc

    def __repr__(self) -> str:
        return f"JsonSerde({getattr(self.type_, '__name__', self.type_)!r})"
