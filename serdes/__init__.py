"""Serializers/deserializers for kstream: Kafka-compatible primitives, JSON, Avro, keys.

Every serde maps ``None`` to ``None`` (tombstones stay tombstones) and raises
``SerializationError`` naming topic/partition/offset on failure, never returning garbage.
"""

from ._avro import AvroSerde, load_avro_schema, parse_avro_schema
from ._base import Serde, SerdeContext, SerializationError
from ._confluent import (
    ConfluentAvroSerde,
    SubjectNameStrategy,
    record_name_strategy,
    topic_name_strategy,
    topic_record_name_strategy,
)
from ._json import JsonSerde
from ._keys import TupleKeySerde, decode_key, encode_key, encode_key_prefix, prefix_range
from ._primitives import (
    BytesSerde,
    Float32Serde,
    Float64Serde,
    Int32Serde,
    Int64Serde,
    StringSerde,
    UUIDSerde,
)
from ._resolve import SERDE_NAMES, resolve
from ._windowed import Windowed, WindowedSerde, WindowStoreKeySerde

__all__ = [
    "Serde",
    "SerdeContext",
    "SerializationError",
    "BytesSerde",
    "StringSerde",
    "Int32Serde",
    "Int64Serde",
    "Float32Serde",
    "Float64Serde",
    "UUIDSerde",
    "JsonSerde",
    "AvroSerde",
    "ConfluentAvroSerde",
    "SubjectNameStrategy",
    "topic_name_strategy",
    "record_name_strategy",
    "topic_record_name_strategy",
    "load_avro_schema",
    "parse_avro_schema",
    "Windowed",
    "WindowedSerde",
    "WindowStoreKeySerde",
    "TupleKeySerde",
    "encode_key",
    "decode_key",
    "encode_key_prefix",
    "prefix_range",
    "resolve",
    "SERDE_NAMES",
]
