"""Grouped streams: aggregations with named, changelog-backed stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl import _stateful
from kstream.dsl._repartition import repartition
from kstream.dsl.table import Table
from kstream.state import kv_store
from serdes import Serde, resolve

if TYPE_CHECKING:
    from kstream.dsl.cogroup import CogroupedStream
    from kstream.dsl.stream import Stream
    from kstream.dsl.windowed import WindowedGroupedStream
    from kstream.windows import Windows

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
        self._default_key: Serde | None = None
        self._default_value: Serde | None = None

    def windowed_by(self, windows: Windows) -> WindowedGroupedStream:
        """Aggregate per key and window: `TumblingWindows`, `HoppingWindows`,
        `SlidingWindows` or `SessionWindows` (results keyed by `serdes.Windowed`).

        Example::

            >>> from kstream import StreamBuilder, TumblingWindows
            >>> from kstream.testing import TopologyTestDriver
            >>> from serdes import StringSerde, WindowedSerde
            >>> builder = StreamBuilder()
            >>> (builder.stream("clicks", "string", "string")
            ...     .group_by_key()
            ...     .windowed_by(TumblingWindows(size=60_000))
            ...     .count("clicks-per-minute")
            ...     .to_stream()
            ...     .to("counts"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     clicks = driver.input_topic("clicks", "string", "string")
            ...     clicks.pipe_many([("u1", "a", 1_000), ("u1", "b", 2_000),
            ...                       ("u1", "c", 61_000)])     # (key, value, timestamp)
            ...     out = driver.output_topic("counts", WindowedSerde(StringSerde()), "int64")
            ...     [(w.key, w.start, count) for w, count in out.read_key_values_to_list()]
            [('u1', 0, 1), ('u1', 0, 2), ('u1', 60000, 1)]
        """
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
        """The number of records per key, in the table (and store) `name`; int64 values.

        Records with a None key or value are not counted. `emit_on_commit=True` coalesces a
        key's updates until the next commit (fewer, later updates; the same final counts).
        Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> words = builder.stream("words", "string", "string")
            >>> words.group_by_key().count("word-counts").to_stream().to("counts")
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("words", "string", "string").pipe_many(
            ...         [("kafka", ""), ("kafka", ""), ("python", "")])
            ...     driver.output_topic("counts", "string", "int64").read_key_values_to_dict()
            ...     driver.get_store("word-counts").get("kafka")
            {'kafka': 2, 'python': 1}
            2
        """
        return self.aggregate(lambda: 0, lambda _k, _v, agg: agg + 1, name,
                              value_serde="int64", backend=backend,
                              emit_on_commit=emit_on_commit)

    def reduce(self, reducer: Callable[[Any, Any], Any], name: str, *,
               value_serde: Any = None, backend: str = "rocksdb",
               emit_on_commit: bool = False) -> Table:
        """Combine a key's values with `reducer(aggregate, value) -> aggregate`; the first
        value of a key is its initial aggregate. The store's value serde is `value_serde`,
        else the grouped values' (as Kafka Streams: a reduce keeps the value type), else the
        app's `default_value_serde`, else JSON. Options as in `aggregate`."""
        missing = object()

        def adder(_key: Any, value: Any, agg: Any) -> Any:
            return value if agg is missing else reducer(agg, value)

        if value_serde is None:
            value_serde = self._value_serde or self._stream.value_serde
        return self.aggregate(lambda: missing, adder, name, value_serde=value_serde,
                              backend=backend, emit_on_commit=emit_on_commit)

    def aggregate(self, initializer: Callable[[], Any], adder: Callable[[Any, Any, Any], Any],
                  name: str, *, value_serde: Any = None, backend: str = "rocksdb",
                  emit_on_commit: bool = False) -> Table:
        """Fold each record into its key's aggregate: `adder(key, value, aggregate) ->
        aggregate`, starting from `initializer() -> aggregate`.

        The result is a table (store `name`, changelog `<application_id>-<name>-changelog`,
        queryable with `app.store(name)`); `value_serde` is the store's (and the result's)
        value serde, else the app's `default_value_serde`, else JSON (docs/serdes.md).
        `backend` "rocksdb" or "memory". Records with a None key or value are not
        aggregated. Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> (builder.stream("payments", "string", "json")
            ...     .group_by_key()
            ...     .aggregate(lambda: 0, lambda card, p, total: total + p["amount"],
            ...                "card-totals")
            ...     .to_stream()
            ...     .to("totals"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("payments", "string", "json").pipe_many(
            ...         [("c1", {"amount": 5}), ("c1", {"amount": 7})])
            ...     driver.output_topic("totals", "string", "json").read_values_to_list()
            [5, 12]
        """
        stream = self.source_stream(name)
        builder = stream._builder
        key_serde = self.key_serde_or_default()
        agg_serde = (resolve(value_serde) if value_serde is not None
                     else builder.topology.serde_defaults.value(f"aggregate {name!r}"))
        store = kv_store(name, key_serde=key_serde, value_serde=agg_serde,
                         backend=backend, timestamped=True)  # type: ignore[arg-type]
        node = builder._name(name, "AGGREGATE")
        builder.topology.add_processor(
            node, lambda: _stateful.AggregateOp(name, initializer, adder, emit_on_commit),
            stream.node)
        builder.topology.add_store(store, node)
        return Table(builder, node, key_serde, agg_serde, store_name=name)

    # -- helpers for aggregations --------------------------------------------------------------
    def key_serde_or_default(self) -> Serde:
        """The key serde aggregations use: the one given to the grouping, else the
        stream's, else the app's `default_key_serde`, else JSON (warned about at start-up
        after `group_by`, whose new key JSON writes with quotes)."""
        known = self._key_serde or self._stream.key_serde
        if known is not None:
            return known
        if self._default_key is None:
            self._default_key = self._stream._builder.topology.serde_defaults.key(
                f"group_by at {self._stream.node!r}", warn=self._repartition)
        return self._default_key

    def value_serde_or_default(self) -> Serde:
        """The value serde of the repartition topic: the one given to the grouping, else the
        stream's, else the app's `default_value_serde`, else JSON."""
        known = self._value_serde or self._stream.value_serde
        if known is not None:
            return known
        if self._default_value is None:
            self._default_value = self._stream._builder.topology.serde_defaults.value(
                f"group_by at {self._stream.node!r}")
        return self._default_value

    def source_stream(self, name: str, key_serde: Serde | None = None) -> Stream:
        """The stream to aggregate: this one, or a repartitioned copy keyed by the new key
        (through `<application_id>-<name>-repartition`)."""
        if not self._repartition:
            return self._stream
        return repartition(self._stream, name, key_serde or self.key_serde_or_default(),
                           self.value_serde_or_default())
