"""Confluent wire format Avro against confluent-kafka's in-memory mock registry."""

from __future__ import annotations

import warnings

import pytest

from serdes import ConfluentAvroSerde, SerdeContext, SerializationError

with warnings.catch_warnings():
    # authlib (a registry-client dependency) installs an "always" filter for its own
    # deprecation warning on import and then warns about httpx; keep test output clean.
    pytest.importorskip("authlib.deprecate")
    warnings.simplefilter("ignore")
    schema_registry = pytest.importorskip("confluent_kafka.schema_registry")

PAYMENT_V1 = {
    "type": "record",
    "name": "Payment",
    "namespace": "com.example",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}],
}
PAYMENT_V2 = {
    **PAYMENT_V1,
    "fields": [*PAYMENT_V1["fields"], {"name": "currency", "type": "string", "default": "EUR"}],
}
PAYMENT_BAD = {
    **PAYMENT_V1,
    "fields": [*PAYMENT_V1["fields"], {"name": "merchant", "type": "string"}],
}


class CountingRegistry:
    """Wraps the mock client and counts calls, to prove the hot path stays local."""

    def __init__(self) -> None:
        self.inner = schema_registry.SchemaRegistryClient.new_client({"url": "mock://test"})
        self.calls: list[str] = []

    def register_schema(self, subject, schema, normalize_schemas=False):
        self.calls.append("register_schema")
        return self.inner.register_schema(subject, schema, normalize_schemas)

    def lookup_schema(self, subject, schema, normalize_schemas=False):
        self.calls.append("lookup_schema")
        return self.inner.lookup_schema(subject, schema, normalize_schemas)

    def get_schema(self, schema_id):
        self.calls.append("get_schema")
        return self.inner.get_schema(schema_id)

    def get_version(self, subject, version):
        self.calls.append("get_version")
        return self.inner.get_version(subject, version)


@pytest.fixture
def registry() -> CountingRegistry:
    return CountingRegistry()


def ctx(topic: str = "payments", offset: int = 0, is_key: bool = False) -> SerdeContext:
    return SerdeContext(topic=topic, partition=0, offset=offset, is_key=is_key)


def test_wire_format_and_roundtrip(registry: CountingRegistry) -> None:
    s = ConfluentAvroSerde(registry, PAYMENT_V1)
    data = s.serialize({"id": "p1", "amount": 9.5}, ctx())
    schema_id = registry.inner.get_latest_version("payments-value").schema_id
    assert data[0] == 0
    assert data[1:5] == schema_id.to_bytes(4, "big")
    assert s.deserialize(data, ctx()) == {"id": "p1", "amount": 9.5}


def test_registry_is_called_once_then_cached(registry: CountingRegistry) -> None:
    writer = ConfluentAvroSerde(registry, PAYMENT_V1)
    payloads = [writer.serialize({"id": str(i), "amount": i}, ctx()) for i in range(50)]
    assert registry.calls == ["register_schema"]
    reader = ConfluentAvroSerde(registry)  # read-only, fresh cache
    for i, data in enumerate(payloads):
        assert reader.deserialize(data, ctx(offset=i)) == {"id": str(i), "amount": float(i)}
    assert registry.calls == ["register_schema", "get_schema"]


def test_key_and_value_subjects_differ(registry: CountingRegistry) -> None:
    s = ConfluentAvroSerde(registry, "string")
    s.serialize("k", ctx(is_key=True))
    s.serialize("v", ctx())
    assert set(registry.inner.get_subjects()) == {"payments-key", "payments-value"}


def test_old_records_decode_with_new_reader_schema(registry: CountingRegistry) -> None:
    old = ConfluentAvroSerde(registry, PAYMENT_V1).serialize({"id": "a", "amount": 1.0}, ctx())
    new_serde = ConfluentAvroSerde(registry, PAYMENT_V2, reader_schema=PAYMENT_V2)
    new = new_serde.serialize({"id": "b", "amount": 2.0, "currency": "USD"}, ctx())
    assert old[1:5] != new[1:5]
    assert new_serde.deserialize(old, ctx()) == {"id": "a", "amount": 1.0, "currency": "EUR"}
    assert new_serde.deserialize(new, ctx())["currency"] == "USD"


def test_incompatible_reader_schema_names_the_record(registry: CountingRegistry) -> None:
    data = ConfluentAvroSerde(registry, PAYMENT_V1).serialize({"id": "a", "amount": 1.0}, ctx())
    reader = ConfluentAvroSerde(registry, reader_schema=PAYMENT_BAD)
    with pytest.raises(SerializationError) as info:
        reader.deserialize(data, SerdeContext("payments", 3, 1234))
    text = str(info.value)
    assert "'payments'" in text and "partition=3" in text and "offset=1234" in text
    assert "ConfluentAvroSerde" in text


def test_auto_register_false_requires_existing_schema(registry: CountingRegistry) -> None:
    s = ConfluentAvroSerde(registry, PAYMENT_V1, auto_register=False)
    with pytest.raises(SerializationError, match="registry"):
        s.serialize({"id": "a", "amount": 1.0}, ctx())
    ConfluentAvroSerde(registry, PAYMENT_V1).serialize({"id": "a", "amount": 1.0}, ctx("other"))
    data = s.serialize({"id": "a", "amount": 1.0}, ctx("other"))
    assert data[0] == 0


def test_record_name_strategies(registry: CountingRegistry) -> None:
    ConfluentAvroSerde(registry, PAYMENT_V1, "record_name").serialize({"id": "a", "amount": 1.0})
    ConfluentAvroSerde(registry, PAYMENT_V1, "topic_record_name").serialize(
        {"id": "a", "amount": 1.0}, ctx("t")
    )
    assert set(registry.inner.get_subjects()) == {"com.example.Payment", "t-com.example.Payment"}


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x00", b"\x01\x00\x00\x00\x01\x02a", b"\x00\x00\x00\x03\xe7\x02a"]
)
def test_bad_frames_and_unknown_ids_raise(registry: CountingRegistry, data: bytes) -> None:
    with pytest.raises(SerializationError, match="offset=8"):
        ConfluentAvroSerde(registry).deserialize(data, ctx(offset=8))


def test_serialize_without_schema_or_topic_raises(registry: CountingRegistry) -> None:
    with pytest.raises(SerializationError, match="only read"):
        ConfluentAvroSerde(registry).serialize({"id": "a"}, ctx())
    with pytest.raises(SerializationError, match="topic"):
        ConfluentAvroSerde(registry, PAYMENT_V1).serialize({"id": "a", "amount": 1.0})


def test_none_is_tombstone(registry: CountingRegistry) -> None:
    s = ConfluentAvroSerde(registry, PAYMENT_V1)
    assert s.serialize(None, ctx()) is None
    assert s.deserialize(None, ctx()) is None
    assert registry.calls == []
