"""Grouped streams and tables: aggregations with named, changelog-backed stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl import _stateful
from kstream.state import kv_store
from kstream.topology import APP_ID, TopologyError
from serdes import JsonSerde, Serde, resolve

if TYPE_CHECKING:
    from kstream.dsl.stream import Stream, StreamBuilder


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

    def count(self, name: str, *, backend: str = "rocksdb",
              emit_on_commit: bool = False) -> Table:
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

    def source_stream(self, name: str) -> Stream:
        """The stream to aggregate: this one, or a repartitioned copy keyed by the new key."""
        from kstream.dsl.stream import Stream

        stream = self._stream
        if not self._repartition:
            return stream
        builder = stream._builder
        topic = builder.topology.add_internal_topic(f"{APP_ID}-{name}-repartition", "repartition")
        key_serde = self.key_serde_or_default()
        value_serde = self._value_serde or stream.value_serde or JsonSerde()
        stream.to(topic, key_serde=key_serde, value_serde=value_serde,
                  name=f"{name}-repartition-sink")
        source = f"{name}-repartition-source"
        builder.topology.add_source(source, topic, key_serde, value_serde)
        return Stream(builder, source, key_serde, value_serde)


class Table:
    """A changelog view: the latest value per key. Changes flow on as a stream of updates."""

    def __init__(self, builder: StreamBuilder, node: str, key_serde: Serde | None,
                 value_serde: Serde | None, store_name: str | None) -> None:
        self._builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store_name = store_name

    def to_stream(self, name: str | None = None) -> Stream:
        from kstream.dsl import _ops
        from kstream.dsl.stream import Stream

        node = self._builder._name(name, "TOSTREAM")
        self._builder.topology.add_processor(node, _ops.PassThroughOp, self.node)
        return Stream(self._builder, node, self.key_serde, self.value_serde)

    def filter(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Table:
        return self._view("FILTER", lambda: _stateful.TableFilterOp(predicate, True), name,
                          self.value_serde)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Table:
        return self._view("FILTER", lambda: _stateful.TableFilterOp(predicate, False), name,
                          self.value_serde)

    def map_values(self, mapper: Callable[[Any], Any], name: str | None = None) -> Table:
        return self._view("MAPVALUES", lambda: _stateful.TableMapValuesOp(mapper), name, None)

    def _view(self, kind: str, supplier: Callable[[], Any], name: str | None,
              value_serde: Serde | None) -> Table:
        node = self._builder._name(name, f"KTABLE-{kind}")
        self._builder.topology.add_processor(node, supplier, self.node)
        return Table(self._builder, node, self.key_serde, value_serde, store_name=None)

    def require_store(self, operation: str) -> str:
        if self.store_name is None:
            raise TopologyError(f"{operation} needs a materialized table: use a table from "
                                "builder.table(...) or an aggregation result")
        return self.store_name
