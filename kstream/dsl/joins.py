"""Building joins into the topology: stream-table, stream-stream (windowed), table-table.

Every join needs the records of one key in one task: inputs whose key an operator may have
changed (`select_key`, `map`, `flat_map`, ...) are repartitioned first, through
`<application_id>-<name>-repartition` (stream-table) or `<name>-left-repartition` /
`<name>-right-repartition` (stream-stream), keyed with the other side's key serde so both
topics partition a key alike. Those topic names come from the join's `name`, which such a
join therefore needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl import _join_ops, _ops, _stateful, _table_ops
from kstream.dsl._repartition import repartition
from kstream.state import kv_store
from kstream.state.builder import KeyValueStoreBuilder
from kstream.state.window_store import window_store
from kstream.topology import TopologyError
from kstream.windows import JoinWindows
from serdes import BytesSerde, Serde, resolve

if TYPE_CHECKING:
    from kstream.dsl.stream import Stream
    from kstream.dsl.table import Table

Joiner = Callable[[Any, Any], Any]
LATE_POLICIES = ("drop", "dead_letter")


def _serde(given: Any, *known: Serde | None) -> Serde | None:
    """The serde given, else the first known one (None: the caller uses a default)."""
    if given is not None:
        return resolve(given)
    return next((s for s in known if s is not None), None)


def stream_table_join(stream: Stream, table: Table, joiner: Joiner, left: bool,
                      name: str | None) -> Stream:
    """Each record meets the table's current value for its key (no window, no buffering)."""
    getter = table.require_getter("join")
    if stream.key_changed:
        if name is None:
            raise TopologyError(
                "a join after a key change repartitions the stream through "
                "'<application_id>-<name>-repartition': give the join a name=..., or call "
                ".repartition(name=...) before it")
        defaults = stream._builder.topology.serde_defaults
        where = f"join {name!r}"
        stream = repartition(
            stream, name, _serde(None, table.key_serde, stream.key_serde) or defaults.key(where),
            _serde(None, stream.value_serde) or defaults.value(where))
    joined = stream._then("JOIN", lambda: _stateful.StreamTableJoinOp(getter, joiner, left),
                          name, True, False)
    for store in getter.stores:
        stream._builder.topology.connect_store(store, joined.node)
    return joined


def stream_stream_join(left: Stream, right: Stream, joiner: Joiner, windows: Any,
                       emit_left: bool, emit_right: bool, name: str | None, *,
                       key_serde: Any, value_serde: Any, other_value_serde: Any, late: str,
                       backend: str) -> Stream:
    """Both sides buffered in window stores `<name>-this-join-store` (left) and
    `<name>-other-join-store` (right); left/outer joins also keep unmatched records in
    `<name>-outer-shared-join-store` until their window closes (see _join_ops)."""
    from kstream.dsl.stream import Stream

    if not isinstance(windows, JoinWindows):
        raise TopologyError(f"a stream-stream join needs windows=JoinWindows(...), not "
                            f"{type(windows).__name__}")
    if not name:
        raise TopologyError("a stream-stream join needs a name: it names its stores and "
                            "changelogs ('<application_id>-<name>-this-join-store-changelog')")
    if late not in LATE_POLICIES:
        raise TopologyError(f"{name}: late must be one of {LATE_POLICIES}, not {late!r}")
    builder = left._builder
    topology = builder.topology
    defaults, where = topology.serde_defaults, f"join {name!r}"
    keys = _serde(key_serde, *((left.key_serde, right.key_serde) if not left.key_changed
                               else (right.key_serde, left.key_serde))) or defaults.key(where)
    left_values = _serde(value_serde, left.value_serde) or defaults.value(where)
    right_values = _serde(other_value_serde, right.value_serde) or defaults.value(where)
    if left.key_changed:
        left = repartition(left, f"{name}-left", keys, left_values)
    if right.key_changed:
        right = repartition(right, f"{name}-right", keys, right_values)
    this_store, other_store = f"{name}-this-join-store", f"{name}-other-join-store"
    outer_store = f"{name}-outer-shared-join-store" if emit_left or emit_right else None
    stores = [window_store(this_store, retention_ms=windows.retention, key_serde=keys,
                           value_serde=left_values, backend=backend),  # type: ignore[arg-type]
              window_store(other_store, retention_ms=windows.retention, key_serde=keys,
                           value_serde=right_values, backend=backend)]  # type: ignore[arg-type]
    if outer_store is not None:
        stores.append(kv_store(outer_store, key_serde=BytesSerde(), value_serde=BytesSerde(),
                               backend=backend))  # type: ignore[arg-type]
    dead_letter = late == "dead_letter"
    w = windows

    def left_op() -> _join_ops.StreamStreamJoinOp:
        return _join_ops.StreamStreamJoinOp(
            _join_ops.LEFT, this_store, other_store, outer_store, joiner, w.before, w.after,
            w.grace, emit_left, emit_right, dead_letter, keys, left_values, right_values)

    def right_op() -> _join_ops.StreamStreamJoinOp:
        return _join_ops.StreamStreamJoinOp(
            _join_ops.RIGHT, other_store, this_store, outer_store, joiner, w.after, w.before,
            w.grace, emit_right, emit_left, dead_letter, keys, right_values, left_values)

    this_node, other_node = f"{name}-this", f"{name}-other"
    topology.add_processor(this_node, left_op, left.node)
    topology.add_processor(other_node, right_op, right.node)
    for store in stores:
        topology.add_store(store, this_node, other_node)
    topology.add_processor(name, _ops.PassThroughOp, this_node, other_node)
    if dead_letter:
        topology.dlq_required = True
    return Stream(builder, name, keys, None)


def table_table_join(left: Table, right: Table, joiner: Joiner, keep_left: bool,
                     keep_right: bool, name: str | None,
                     materialized: str | KeyValueStoreBuilder | None,
                     value_serde: Any) -> Table:
    """A change on either side meets the other table's current value (its store, or its
    upstream store through a view's getter); both tables must be co-partitioned."""
    from kstream.dsl.table import Table

    left_get = left.require_getter("join")
    right_get = right.require_getter("join")
    builder = left._builder
    topology = builder.topology
    combine = _table_ops.join_rule(joiner, keep_left, keep_right)
    node = builder._name(name, "KTABLE-JOIN")
    where = f"join {node!r}"
    keys = left.key_serde or right.key_serde or topology.serde_defaults.key(where)
    values = None if value_serde is None else resolve(value_serde)
    store = None
    if isinstance(materialized, str):
        store = kv_store(materialized, key_serde=keys,
                         value_serde=values or topology.serde_defaults.value(where))
    elif materialized is not None:
        store = materialized
    if store is not None:
        store.timestamped = True  # results keep their time (KIP-258), read by later joins
    store_name = None if store is None else store.name
    left_node, right_node = f"{node}-this", f"{node}-other"
    topology.add_processor(
        left_node, lambda: _table_ops.TableJoinOp(True, right_get, combine, store_name),
        left.node)
    topology.add_processor(
        right_node, lambda: _table_ops.TableJoinOp(False, left_get, combine, store_name),
        right.node)
    for st in right_get.stores:
        topology.connect_store(st, left_node)
    for st in left_get.stores:
        topology.connect_store(st, right_node)
    if store is not None:
        topology.add_store(store, left_node, right_node)
    topology.add_processor(node, _ops.PassThroughOp, left_node, right_node)
    getter = (None if store_name is not None
              else _table_ops.JoinGetter(left_get, right_get, combine))
    return Table(builder, node, keys, values or (None if store is None else store.value_serde),
                 store_name=store_name, getter=getter)
