"""Avro in the Confluent wire format, with schemas kept in a Schema Registry.

Wire format: magic byte 0, 4-byte big-endian schema id, Avro binary. The registry client is
any object with confluent-kafka's ``SchemaRegistryClient`` methods (``register_schema``,
``lookup_schema``, ``get_schema``, ``get_version``); the mock client from
``SchemaRegistryClient.new_client({"url": "mock://..."})`` works in tests.

The registry is consulted only on the first record per subject (writes) and per schema id
(reads); afterwards the header bytes and parsed schemas come from dicts, so the hot path does
no I/O. Reads resolve the record's writer schema (by id) against the reader schema, so old
records still decode after a compatible schema change.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from ._avro import SchemaLike, load_avro_schema, read_avro, schema_full_name, write_avro
from ._base import SerdeContext, serde_error

__all__ = [
    "ConfluentAvroSerde",
    "SubjectNameStrategy",
    "topic_name_strategy",
    "record_name_strategy",
    "topic_record_name_strategy",
]

SubjectNameStrategy = Callable[[str | None, bool, str | None], str]
"""``(topic, is_key, record_full_name) -> subject``."""

_HEADER = struct.Struct(">bI")
_MAGIC = 0


def topic_name_strategy(topic: str | None, is_key: bool, record_name: str | None) -> str:
    """``<topic>-key`` / ``<topic>-value`` (the Confluent default)."""
    if topic is None:
        raise ValueError("topic name strategy needs a topic (pass a SerdeContext)")
    return f"{topic}-key" if is_key else f"{topic}-value"


def record_name_strategy(topic: str | None, is_key: bool, record_name: str | None) -> str:
    """The record's fully qualified name, shared by all topics."""
    if record_name is None:
        raise ValueError("record name strategy needs a named (record) schema")
    return record_name


def topic_record_name_strategy(topic: str | None, is_key: bool, record_name: str | None) -> str:
    """``<topic>-<record full name>``."""
    if topic is None or record_name is None:
        raise ValueError("topic record name strategy needs a topic and a named schema")
    return f"{topic}-{record_name}"


_STRATEGIES: dict[str, SubjectNameStrategy] = {
    "topic_name": topic_name_strategy,
    "record_name": record_name_strategy,
    "topic_record_name": topic_record_name_strategy,
}


class ConfluentAvroSerde:
    """Confluent-wire-format Avro backed by a schema registry client.

    ``schema`` is the writer schema for ``serialize`` (without it the serde only reads).
    ``reader_schema`` is what records are decoded into; without it each record decodes with
    its own writer schema. With ``auto_register=False`` the schema must already be registered
    under the subject (looked up, never created).
    """

    __slots__ = (
        "registry",
        "schema",
        "reader_schema",
        "auto_register",
        "normalize_schemas",
        "validate",
        "subject_name_strategy",
        "_schema_str",
        "_record_name",
        "_writer",
        "_reader",
        "_value_headers",
        "_key_headers",
        "_by_id",
    )

    def __init__(
        self,
        registry_client: Any,
        schema: SchemaLike | None = None,
        subject_name_strategy: SubjectNameStrategy | str = topic_name_strategy,
        reader_schema: SchemaLike | None = None,
        auto_register: bool = True,
        *,
        normalize_schemas: bool = False,
        validate: bool = False,
    ) -> None:
        if isinstance(subject_name_strategy, str):
            try:
                subject_name_strategy = _STRATEGIES[subject_name_strategy]
            except KeyError:
                raise ValueError(
                    f"unknown subject name strategy {subject_name_strategy!r}; "
                    f"choose one of {sorted(_STRATEGIES)}"
                ) from None
        self.registry = registry_client
        self.subject_name_strategy = subject_name_strategy
        self.auto_register = auto_register
        self.normalize_schemas = normalize_schemas
        self.validate = validate
        self.schema = None if schema is None else load_avro_schema(schema)
        self.reader_schema = None if reader_schema is None else load_avro_schema(reader_schema)
        self._schema_str = None if self.schema is None else json.dumps(self.schema)
        self._record_name = None if self.schema is None else schema_full_name(self.schema)
        self._writer = None if self.schema is None else fastavro.parse_schema(self.schema)
        self._reader = (
            None if self.reader_schema is None else fastavro.parse_schema(self.reader_schema)
        )
        # topic -> 5-byte wire header, one dict per key/value side (no tuple per record).
        self._value_headers: dict[str | None, bytes] = {}
        self._key_headers: dict[str | None, bytes] = {}
        # schema id -> (parsed writer schema, parsed reader schema)
        self._by_id: dict[int, tuple[Any, Any]] = {}

    # -- writing -------------------------------------------------------------------------

    def serialize(self, obj: Any, ctx: SerdeContext | None = None) -> bytes | None:
        """Confluent wire format: magic byte 0, the schema id (looked up or registered under
        the subject the strategy names, once per topic), then Avro binary."""
        if obj is None:
            return None
        if ctx is None:
            header = self._value_headers.get(None)
        else:
            headers = self._key_headers if ctx.is_key else self._value_headers
            header = headers.get(ctx.topic)
        if header is None:
            header = self._header_for(ctx)
        return write_avro(self, self._writer, obj, ctx, self.validate, header)

    def _header_for(self, ctx: SerdeContext | None) -> bytes:
        """First record for a topic: find/register the schema id and cache the header."""
        if self._writer is None:
            raise serde_error(self, "no writer schema configured; this serde can only read", ctx)
        topic = None if ctx is None else ctx.topic
        is_key = False if ctx is None else ctx.is_key
        try:
            subject = self.subject_name_strategy(topic, is_key, self._record_name)
            schema_id = self._schema_id(subject)
        except Exception as exc:  # registry/network errors, strategy errors
            raise serde_error(self, "cannot get schema id from registry", ctx, exc) from exc
        header = _HEADER.pack(_MAGIC, schema_id)
        (self._key_headers if is_key else self._value_headers)[topic] = header
        # Records we wrote ourselves decode without asking the registry.
        self._by_id.setdefault(schema_id, (self._writer, self._reader or self._writer))
        return header

    def _schema_id(self, subject: str) -> int:
        from confluent_kafka.schema_registry import Schema  # needs the [schemaregistry] extra

        reg_schema = Schema(self._schema_str, "AVRO")
        if self.auto_register:
            return int(
                self.registry.register_schema(
                    subject, reg_schema, normalize_schemas=self.normalize_schemas
                )
            )
        registered = self.registry.lookup_schema(
            subject, reg_schema, normalize_schemas=self.normalize_schemas
        )
        return int(registered.schema_id)

    # -- reading -------------------------------------------------------------------------

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Any:
        """The decoded Avro datum, read with the writer schema its id names (fetched from
        the registry once per id) and resolved to the reader schema when one is given."""
        if data is None:
            return None
        if len(data) < 5 or data[0] != _MAGIC:
            raise serde_error(
                self, "not Confluent wire format (missing magic byte 0 + schema id)", ctx
            )
        schema_id = _HEADER.unpack_from(data)[1]
        pair = self._by_id.get(schema_id)
        if pair is None:
            pair = self._fetch(schema_id, ctx)
        return read_avro(self, data, 5, pair[0], pair[1], ctx)

    def _fetch(self, schema_id: int, ctx: SerdeContext | None) -> tuple[Any, Any]:
        """First record with this schema id: fetch, parse (with references) and cache it."""
        try:
            registered = self.registry.get_schema(schema_id)
            schema_type = getattr(registered, "schema_type", "AVRO") or "AVRO"
            if schema_type.upper() != "AVRO":
                raise ValueError(f"schema {schema_id} is {schema_type}, not AVRO")
            named: dict[str, Any] = {}
            self._load_references(getattr(registered, "references", None) or [], named, set())
            writer = fastavro.parse_schema(json.loads(registered.schema_str), named)
        except Exception as exc:
            raise serde_error(self, f"cannot load writer schema id {schema_id}", ctx, exc) from exc
        pair = (writer, self._reader or writer)
        self._by_id[schema_id] = pair
        return pair

    def _load_references(
        self, references: list[Any], named: dict[str, Any], seen: set[tuple[str, int]]
    ) -> None:
        """Parse referenced schemas (depth first) into ``named`` so the writer can use them."""
        for ref in references:
            key = (ref.subject, ref.version)
            if key in seen:
                continue
            seen.add(key)
            registered = self.registry.get_version(ref.subject, ref.version)
            self._load_references(registered.schema.references or [], named, seen)
            fastavro.parse_schema(json.loads(registered.schema.schema_str), named)

    def __repr__(self) -> str:
        name = self._record_name or (self.schema if self.schema is not None else "read-only")
        return f"ConfluentAvroSerde({name!r})"
