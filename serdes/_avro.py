"""Avro (fastavro) with a fixed writer schema, plus schema loading shared with _confluent.

Schemaless binary: no header, no schema id, so both sides must agree on the writer schema
out of band. When a reader schema is given, Avro schema resolution maps old records onto it
(new fields with defaults are filled in, removed fields skipped).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import fastavro

from ._base import SerdeContext, serde_error

__all__ = ["AvroSerde", "SchemaLike", "load_avro_schema", "parse_avro_schema"]

SchemaLike = Any  # dict | list | str (JSON text, primitive name or .avsc path) | os.PathLike

_PRIMITIVES = frozenset(["null", "boolean", "int", "long", "float", "double", "bytes", "string"])
_BytesIO = io.BytesIO
_write = fastavro.schemaless_writer
_read = fastavro.schemaless_reader


def _strip_fastavro(obj: Any) -> Any:
    """Drop fastavro's bookkeeping keys so a parsed schema can be re-serialized as JSON."""
    if isinstance(obj, dict):
        return {k: _strip_fastavro(v) for k, v in obj.items() if not k.startswith("__")}
    if isinstance(obj, list):
        return [_strip_fastavro(v) for v in obj]
    return obj


def load_avro_schema(schema: SchemaLike) -> Any:
    """Return the JSON form (dict/list/str) of a schema given as dict, JSON text or file path."""
    if isinstance(schema, (dict, list)):
        return _strip_fastavro(schema)
    if isinstance(schema, os.PathLike):
        schema = os.fspath(schema)
    if not isinstance(schema, str):
        raise TypeError(f"unsupported schema type {type(schema).__name__}")
    text = schema.strip()
    if text in _PRIMITIVES:
        return text
    if text[:1] in ("{", "[", '"'):
        return json.loads(text)
    if not os.path.isfile(schema):
        raise ValueError(f"schema is neither JSON, a primitive type name nor a file: {schema!r}")
    with open(schema, encoding="utf-8") as fh:
        return json.load(fh)


def parse_avro_schema(schema: SchemaLike, named_schemas: dict[str, Any] | None = None) -> Any:
    """Load and parse once at construction time; the hot path only sees parsed schemas."""
    return fastavro.parse_schema(load_avro_schema(schema), named_schemas)


def schema_full_name(schema_json: Any) -> str | None:
    """Fully qualified name of a named top-level schema (record/enum/fixed), else None."""
    if isinstance(schema_json, dict) and "name" in schema_json:
        name = schema_json["name"]
        ns = schema_json.get("namespace")
        return name if "." in name or not ns else f"{ns}.{name}"
    return None


class AvroSerde:
    """Schemaless Avro with a fixed writer schema and optional reader schema.

    ``validate=True`` checks each value against the schema before writing; it roughly
    doubles write cost but rejects values fastavro would otherwise coerce (e.g. 1.5 -> long).
    """

    __slots__ = ("writer_schema", "reader_schema", "validate", "_writer", "_reader")

    def __init__(
        self,
        writer_schema: SchemaLike,
        reader_schema: SchemaLike | None = None,
        *,
        validate: bool = False,
    ) -> None:
        self.writer_schema = load_avro_schema(writer_schema)
        self.reader_schema = None if reader_schema is None else load_avro_schema(reader_schema)
        self.validate = validate
        self._writer = fastavro.parse_schema(self.writer_schema)
        self._reader = (
            self._writer if self.reader_schema is None
            else fastavro.parse_schema(self.reader_schema)
        )

    def serialize(self, obj: Any, ctx: SerdeContext | None = None) -> bytes | None:
        """`obj` (dict, or what the schema's types accept) as Avro binary with the writer
        schema; a value that does not fit the schema is a SerializationError."""
        if obj is None:
            return None
        return write_avro(self, self._writer, obj, ctx, self.validate, None)

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Any:
        """The decoded Avro datum (records as dicts), read with the writer schema and, when
        given, resolved to the reader schema."""
        if data is None:
            return None
        return read_avro(self, data, 0, self._writer, self._reader, ctx)

    def __repr__(self) -> str:
        return f"AvroSerde({schema_full_name(self.writer_schema) or self.writer_schema!r})"


def write_avro(
    serde: object,
    parsed: Any,
    obj: Any,
    ctx: SerdeContext | None,
    validate: bool,
    header: bytes | None,
) -> bytes:
    """Encode ``obj`` (after ``header``, if any); every failure becomes SerializationError."""
    try:
        if validate:
            fastavro.validation.validate(obj, parsed, raise_errors=True)
        buf = _BytesIO()
        if header is not None:
            buf.write(header)
        _write(buf, parsed, obj)
        return buf.getvalue()
    except Exception as exc:  # fastavro raises many types; all mean "value doesn't fit"
        raise serde_error(serde, "cannot encode value with Avro schema", ctx, exc) from exc


def read_avro(
    serde: object, data: bytes, offset: int, writer: Any, reader: Any, ctx: SerdeContext | None
) -> Any:
    """Decode Avro binary starting at ``offset``; rejects truncated data and trailing bytes."""
    try:
        buf = _BytesIO(data)
        if offset:
            buf.seek(offset)
        value = _read(buf, writer, reader)
    except Exception as exc:  # EOFError, SchemaResolutionError, IndexError, UnicodeError ...
        raise serde_error(serde, "cannot decode Avro data", ctx, exc) from exc
    if buf.tell() != len(data):
        raise serde_error(
            serde, f"{len(data) - buf.tell()} trailing bytes after Avro value (wrong schema?)", ctx
        )
    return value
