"""JSON serde: orjson output, dataclass decoding (nested), errors."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serdes import JsonSerde, SerdeContext, SerializationError


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@dataclass
class Money:
    amount: float
    currency: str = "EUR"


@dataclass
class Line:
    sku: str
    qty: int
    price: Money


@dataclass
class Order:
    id: uuid.UUID
    at: dt.datetime
    side: Side
    lines: list[Line]
    total: Money | None = None
    tags: dict[str, int] = field(default_factory=dict)
    parent: Order | None = None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(json_values.filter(lambda v: v is not None))
def test_roundtrip_plain_json(value) -> None:
    s = JsonSerde()
    assert s.deserialize(s.serialize(value)) == value


def sample_order() -> Order:
    return Order(
        id=uuid.UUID("123e4567-e89b-12d3-a456-426614174000"),
        at=dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
        side=Side.SELL,
        lines=[Line("a", 2, Money(1.5)), Line("b", 1, Money(3, "USD"))],
        total=Money(6.0),
        tags={"x": 1},
        parent=Order(uuid.UUID(int=1), dt.datetime(2024, 1, 1), Side.BUY, []),
    )


def test_dataclass_roundtrip_nested() -> None:
    s = JsonSerde(Order)
    order = sample_order()
    data = s.serialize(order)
    assert orjson.loads(data)["lines"][0] == {
        "sku": "a",
        "qty": 2,
        "price": {"amount": 1.5, "currency": "EUR"},
    }
    back = s.deserialize(data)
    assert back == order
    assert isinstance(back.lines[1].price, Money)
    assert back.lines[1].price.amount == 3.0 and isinstance(back.lines[1].price.amount, float)


@given(
    st.builds(
        Line,
        st.text(),
        st.integers(-(2**63), 2**63 - 1),
        st.builds(Money, st.floats(allow_nan=False, allow_infinity=False), st.text()),
    )
)
def test_dataclass_property_roundtrip(line: Line) -> None:
    s = JsonSerde(Line)
    assert s.deserialize(s.serialize(line)) == line


def test_missing_fields_use_defaults_and_unknown_are_ignored() -> None:
    assert JsonSerde(Money).deserialize(b'{"amount": 2, "extra": true}') == Money(2.0)


def test_typed_containers() -> None:
    s = JsonSerde(list[Money])
    assert s.deserialize(b'[{"amount": 1}]') == [Money(1.0)]


@pytest.mark.parametrize(
    "data",
    [b"{not json", b'{"currency": "EUR"}', b'{"amount": "ten"}', b"[1, 2]", b'"x"'],
)
def test_bad_input_raises_with_record_coordinates(data: bytes) -> None:
    ctx = SerdeContext(topic="payments", partition=4, offset=1000)
    with pytest.raises(SerializationError) as info:
        JsonSerde(Money).deserialize(data, ctx)
    text = str(info.value)
    assert "payments" in text and "4" in text and "1000" in text and "JsonSerde" in text


def test_unserializable_value_raises() -> None:
    with pytest.raises(SerializationError, match="JsonSerde"):
        JsonSerde().serialize({1j: object()}, SerdeContext(topic="t"))


def test_none_is_tombstone() -> None:
    assert JsonSerde(Money).serialize(None) is None
    assert JsonSerde(Money).deserialize(None) is None


def test_orjson_options_pass_through() -> None:
    s = JsonSerde(option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)
    assert s.serialize({2: "b", 1: "a"}) == b'{"1":"a","2":"b"}'
