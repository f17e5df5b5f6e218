"""Windowed aggregations: `stream.group_by_key().windowed_by(windows).count(name, ...)`.

The result is a table keyed by `serdes.Windowed(key, start, end)`; its `to_stream()` writes
with `serdes.WindowedSerde(inner key serde)` by default (inner key bytes + start + end, both
big-endian int64). For Java TimeWindowed compatibility pass
`WindowedSerde(inner, window_size_ms=size)` to `to()` explicitly.

Each aggregation `name` names its window (or session) store and changelog
(`<application_id>-<name>-changelog`), its repartition topic when the key changed, and with
emit="final" the index of windows still owing a result (store `<name>-pending-final`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kstream.dsl import _windowed_ops as ops
from kstream.dsl.table import Table
from kstream.state import kv_store
from kstream.state.session_store import session_store
from kstream.state.window_store import TimestampedSerde, window_store
from kstream.topology import TopologyError
from kstream.windows import (
    HoppingWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    to_millis,
)
from serdes import BytesSerde, Int64Serde, WindowedSerde, resolve

if TYPE_CHECKING:
    from kstream.dsl.grouped import GroupedStream

EMIT_MODES = ("update", "final")
LATE_POLICIES = ("drop", "dead_letter")
_MISSING = object()


def windowed_grouped_stream(grouped: GroupedStream, windows: Any) -> WindowedGroupedStream:
    if not isinstance(windows, (TumblingWindows, HoppingWindows, SlidingWindows,
                                SessionWindows)):
        raise TopologyError(f"windowed_by needs TumblingWindows, HoppingWindows, "
                            f"SlidingWindows or SessionWindows, not {type(windows).__name__}")
    return WindowedGroupedStream(grouped, windows)


class WindowedGroupedStream:
    """Grouped records to aggregate per key and window.

    Common options: `emit` "update" (every change, default) or "final" (one result per window
    once it closes); `late` "drop" or "dead_letter" (late records go to
    `<application_id>-dlq` with kstream.error.* headers; they are counted either way);
    `backend` "rocksdb" or "memory"; `retention` (ms or timedelta) keeps windows queryable
    longer than the minimum (size + grace).
    """

    def __init__(self, grouped: GroupedStream, windows: Any) -> None:
        self._grouped = grouped
        self.windows = windows

    def count(self, name: str, *, emit: str = "update", late: str = "drop",
              backend: str = "rocksdb", retention: int | timedelta | None = None) -> Table:
        """The number of records per key and window, in the window (or session) store `name`;
        int64 values, keys `serdes.Windowed(key, start, end)`. Options as in the class
        docstring; see `GroupedStream.windowed_by` for an example."""
        return self.aggregate(lambda: 0, _count_adder, name, merger=_sum_merger,
                              value_serde=Int64Serde(), emit=emit, late=late, backend=backend,
                              retention=retention)

    def reduce(self, reducer: Callable[[Any, Any], Any], name: str, *, value_serde: Any = None,
               emit: str = "update", late: str = "drop", backend: str = "rocksdb",
               retention: int | timedelta | None = None) -> Table:
        """Combine each window's values with `reducer(aggregate, value) -> aggregate`; a
        window's first value is its initial aggregate (merged sessions are reduced too).
        Aggregates use `value_serde`, else the grouped values' (as Kafka Streams: a reduce
        keeps the value type), else the app's `default_value_serde`, else JSON."""

        def adder(_key: Any, value: Any, agg: Any) -> Any:
            return value if agg is _MISSING else reducer(agg, value)

        def merger(_key: Any, a: Any, b: Any) -> Any:
            if a is _MISSING:
                return b
            return a if b is _MISSING else reducer(a, b)

        if value_serde is None:
            grouped = self._grouped
            value_serde = grouped._value_serde or grouped._stream.value_serde
        return self.aggregate(lambda: _MISSING, adder, name, merger=merger,
                              value_serde=value_serde, emit=emit, late=late, backend=backend,
                              retention=retention)

    def aggregate(self, initializer: Callable[[], Any], adder: Callable[[Any, Any, Any], Any],
                  name: str, *, merger: Callable[[Any, Any, Any], Any] | None = None,
                  value_serde: Any = None, emit: str = "update", late: str = "drop",
                  backend: str = "rocksdb",
                  retention: int | timedelta | None = None) -> Table:
        """`adder(key, value, aggregate) -> aggregate` per window, from `initializer() ->
        aggregate`; aggregates use `value_serde`, else the app's `default_value_serde`, else
        JSON (docs/serdes.md).

        Session windows also need `merger(key, agg1, agg2) -> agg` for bridged sessions.
        The result table is keyed by `serdes.Windowed(key, start, end)` (stream it out with
        `WindowedSerde(key_serde)`); it can be filtered, mapped and streamed, not joined or
        re-grouped.
        """
        if emit not in EMIT_MODES:
            raise TopologyError(f"{name}: emit must be one of {EMIT_MODES}, not {emit!r}")
        if late not in LATE_POLICIES:
            raise TopologyError(f"{name}: late must be one of {LATE_POLICIES}, not {late!r}")
        windows = self.windows
        if isinstance(windows, SessionWindows) and merger is None:
            raise TopologyError(f"{name}: session windows need a merger(key, agg1, agg2)")
        grouped = self._grouped
        stream = grouped.source_stream(name)
        builder = stream._builder
        topology = builder.topology
        key_serde = grouped.key_serde_or_default()
        in_value_serde = grouped.value_serde_or_default()
        agg_serde = (resolve(value_serde) if value_serde is not None
                     else topology.serde_defaults.value(f"aggregate {name!r}"))
        keep = windows.retention if retention is None else max(
            windows.retention, to_millis(retention, "retention"))
        if isinstance(windows, SessionWindows):
            store = session_store(name, retention_ms=keep, key_serde=key_serde,
                                  value_serde=agg_serde, backend=backend)  # type: ignore[arg-type]
        else:
            stored = TimestampedSerde(agg_serde) if isinstance(windows, SlidingWindows) \
                else agg_serde
            store = window_store(name, retention_ms=keep, key_serde=key_serde,  # type: ignore[assignment]
                                 value_serde=stored, backend=backend)  # type: ignore[arg-type]
            # Time windows keep their largest record time beside the aggregate (KIP-258); sliding
            # windows have it in their value.
            store.timestamped = not isinstance(windows, SlidingWindows)
        index = None
        if emit == "final":
            index = kv_store(f"{name}-pending-final", key_serde=BytesSerde(),
                             value_serde=BytesSerde(), backend=backend)  # type: ignore[arg-type]
        dead_letter = late == "dead_letter"
        index_name = None if index is None else index.name

        def supplier() -> ops._WindowedAggregate:
            if isinstance(windows, SessionWindows):
                return ops.SessionWindowAggregateOp(
                    name, index_name, windows, initializer, adder,
                    merger, dead_letter, key_serde, in_value_serde)  # type: ignore[arg-type]
            if isinstance(windows, SlidingWindows):
                return ops.SlidingWindowAggregateOp(name, index_name, windows, initializer, adder,
                                                    dead_letter, key_serde, in_value_serde)
            return ops.TimeWindowAggregateOp(name, index_name, windows, initializer, adder,
                                             dead_letter, key_serde, in_value_serde)

        node = builder._name(name, "WINDOWED-AGGREGATE")
        topology.add_processor(node, supplier, stream.node)
        topology.add_store(store, node)
        if index is not None:
            topology.add_store(index, node)
        if dead_letter:
            topology.dlq_required = True
        return Table(builder, node, WindowedSerde(key_serde), agg_serde, store_name=None,
                     changes=False)


def _count_adder(_key: Any, _value: Any, agg: int) -> int:
    return agg + 1


def _sum_merger(_key: Any, a: int, b: int) -> int:
    return a + b
