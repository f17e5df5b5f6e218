"""Grouped streams: aggregations with named, changelog-backed stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl import _stateful
from kstream.dsl._repartition import repartition
from kstream.dsl.table import Table
from kstream.state import kv_store
from serdes import JsonSerde, Serde, resolve

if TYPE_CHECKING:
    from kstream.dsl.cogroup import CogroupedStream
    from kstream.dsl.stream import Stream

__all__ = ["GroupedStream", "Table"]


class GroupedStream:
    """Records grouped by key, ready to aggregate. Repartitions first when the key changed.

    Every aggregation takes a `name`: it names the store, its changelog
    (`<application_id>-<name>-changelog`) and, when needed, the repartition topic
    (`<application_id>-<name>-repartition`), so these survive code changes.
    """

    def __init__(self, stream: Stream, key_serde: Serde | None, value_serde: Serde | None,
                 repartition: bool) -> None:
        self._stream = stream
        self._key_serde = key_serde
        self._value_serde = value_serde
        self._repartition = repartition

    def windowed_by(self, windows: Any) -> Any:
        """Windowed aggregations (tumbling, hopping, sliding, session windows)."""
        from kstream.dsl.windowed import windowed_grouped_stream

        return windowed_grouped_stream(self, windows)

    def cogroup(self, aggregator: Callable[[Any, Any, Any], Any]) -> CogroupedStream:
        """Start a cogroup: several grouped streams folded into one aggregate and one store.

        `aggregator(key, value, aggregate) -> aggregate` for this stream's records; add more
        streams with `.cogroup(other_grouped, other_aggregator)`, then `.aggregate(...)`.
        """
        from kstream.dsl.cogroup import CogroupedStream

        return CogroupedStream([(self, aggregator)])

    def count(self, name: str, *, backend: str = "rocksdb",
              emit_on_commit: bool = False) -> Table:
        """The number of records per key (table `name`)."""
        return self.aggregate(lambda: 0, lambda _k, _v, agg: agg + 1, name,
                              value_serde="int64", backend=backend,
                              emit_on_commit=emit_on_commit)

    def reduce(self, reducer: Callable[[Any, Any], Any], name: str, *,
               value_serde: Any = None, backend: str = "rocksdb",
               emit_on_commit: bool = False) -> Table:
        """`reducer(aggregate, value)`; the first value of a key is its initial aggregate."""
        missing = object()

        def adder(_key: Any, value: Any, agg: Any) -> Any:
            return value if agg is missing else reducer(agg, value)

        return self.aggregate(lambda: missing, adder, name, value_serde=value_serde,
                              backend=backend, emit_on_commit=emit_on_commit)

    def aggregate(self, initializer: Callable[[], Any], adder: Callable[[Any, Any, Any], Any],
                  name: str, *, value_serde: Any = None, backend: str = "rocksdb",
                  emit_on_commit: bool = False) -> Table:
        """`adder(key, value, aggregate) -> aggregate`, starting from `initializer()`."""
        stream = self.source_stream(name)
        builder = stream._builder
        key_serde = self.key_serde_or_default()
        agg_serde = resolve(value_serde) if value_serde is not None else JsonSerde()
        store = kv_store(name, key_serde=key_serde, value_serde=agg_serde,
                         backend=backend)  # type: ignore[arg-type]
        node = builder._name(name, "AGGREGATE")
        builder.topology.add_processor(
            node, lambda: _stateful.AggregateOp(name, initializer, adder, emit_on_commit),
            stream.node)
        builder.topology.add_store(store, node)
        return Table(builder, node, key_serde, agg_serde, store_name=name)

    # -- helpers for aggregations --------------------------------------------------------------
    def key_serde_or_default(self) -> Serde:
        return self._key_serde or self._stream.key_serde or JsonSerde()

    def value_serde_or_default(self) -> Serde:
        return self._value_serde or self._stream.value_serde or JsonSerde()

    def source_stream(self, name: str, key_serde: Serde | None = None) -> Stream:
        """The stream to aggregate: this one, or a repartitioned copy keyed by the new key
        (through `<application_id>-<name>-repartition`)."""
        if not self._repartition:
            return self._stream
        return repartition(self._stream, name, key_serde or self.key_serde_or_default(),
                           self.value_serde_or_default())
