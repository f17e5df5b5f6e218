"""One root for every error; a broken kstream invariant is never dead-lettered as a bad record."""

from __future__ import annotations

import operator

import pytest

from kstream import ConfigError, KStreamError, MissingTopicsError, RecordError, StreamBuilder
from kstream.errors import FatalError, InternalError, PunctuationError, TopologyError
from kstream.state.errors import StateCorruptedError
from kstream.state.kv import TimestampedKeyValueStore
from kstream.testing import TopologyTestDriver
from serdes import StringSerde


@pytest.mark.parametrize("error", [ConfigError, TopologyError, MissingTopicsError, RecordError,
                                   PunctuationError, InternalError, FatalError,
                                   StateCorruptedError])
def test_every_error_has_one_root(error: type[Exception]) -> None:
    assert issubclass(error, KStreamError)


def test_config_and_topology_errors_are_still_value_errors() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(TopologyError, ValueError)


def _counting() -> StreamBuilder:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), StringSerde())
     .group_by(lambda _k, v: v, key_serde=StringSerde()).count(name="counts")
     .to_stream().map_values(str).to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    return b


def test_internal_failure_stops_even_under_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's exception is the record's fault (dead-lettered); an exception raised inside
    kstream's own store code is not: it stops the app and names where it happened."""
    # A builtin raises in C, so the innermost Python frame is kstream's caller: as if kstream's
    # own code had broken (a store call with impossible arguments).
    monkeypatch.setattr(TimestampedKeyValueStore, "put_with_timestamp", operator.truediv)
    where = r"kstream/dsl/.*counts-repartition\[0\]@0.*TypeError"
    # Unfused: a builtin called straight from a fused chain (here the stand-in store put)
    # cannot be told from a user's builtin callback (`map_values(int)`), so it counts as the
    # record's fault there; the aggregation's own frame is what marks kstream's code.
    with TopologyTestDriver(_counting(), error_policy="dead_letter", fusion=False) as driver, \
            pytest.raises(InternalError, match=where) as info:
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "a")
    assert not isinstance(info.value, RecordError)


def test_user_exception_is_a_record_error() -> None:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), StringSerde()).map_values(lambda v: 1 // int(v))
     .to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    with TopologyTestDriver(b) as driver, pytest.raises(RecordError, match="ZeroDivision"):
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "0")
