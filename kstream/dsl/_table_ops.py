"""Table operators: each takes and forwards `Change(old, new)` records (see _change).

Also the value getters: how an operator reads another table's current value for a key
without that table being materialized itself (a filtered or mapped view, a join result),
as Kafka Streams' KTableValueGetter does: the getter applies the view's functions to the
value in the nearest store upstream.

Invariant kept by every operator here but the source: a change whose old and new values are
both None is never forwarded (nothing changed for the key as far as this table is concerned);
operators receiving one ignore it. The source forwards every update it reads, a delete of an
absent key too, so `builder.table(...).to_stream()` shows each tombstone (as Kafka Streams).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from kstream.dsl._change import Change
from kstream.dsl._ops import _Operator
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.state.backend import NO_TIMESTAMP
from kstream.state.kv import TimestampedKeyValueStore

Getter = Callable[[Any], Any]
"""key -> the table's current value (None: absent)."""

TimestampedGetter = Callable[[Any], "tuple[Any, int] | None"]
"""key -> (current value, its timestamp) or None: what table-table joins read, to stamp a
result with the larger of both sides' times (KIP-258). NO_TIMESTAMP (-1) where a store keeps
none."""

Combine = Callable[[Any, Any], Any]
"""(left value or None, right value or None) -> joined value or None: the join's rule."""


class ValueGetter(ABC):
    """How to read a table's current value by key: the stores it needs, and a builder."""

    stores: tuple[str, ...]

    @abstractmethod
    def build(self, context: ProcessorContext) -> Getter:
        """The lookup function for one task (the stores must be connected to the node)."""

    @abstractmethod
    def build_timestamped(self, context: ProcessorContext) -> TimestampedGetter:
        """`build`, returning (value, timestamp) or None."""


class StoreGetter(ValueGetter):
    def __init__(self, store: str) -> None:
        self.stores = (store,)

    def build(self, context: ProcessorContext) -> Getter:
        getter: Getter = context.get_store(self.stores[0]).get
        return getter

    def build_timestamped(self, context: ProcessorContext) -> TimestampedGetter:
        store = context.get_store(self.stores[0])
        if isinstance(store, TimestampedKeyValueStore):
            return store.get_with_timestamp
        get = store.get

        def untimed(key: Any) -> tuple[Any, int] | None:
            value = get(key)
            return None if value is None else (value, NO_TIMESTAMP)

        return untimed


class FilterGetter(ValueGetter):
    def __init__(self, parent: ValueGetter, predicate: Callable[[Any, Any], bool],
                 keep_when: bool) -> None:
        self.stores = parent.stores
        self._parent, self._predicate, self._keep_when = parent, predicate, keep_when

    def build(self, context: ProcessorContext) -> Getter:
        get, predicate, keep_when = self._parent.build(context), self._predicate, self._keep_when

        def filtered(key: Any) -> Any:
            value = get(key)
            if value is None or bool(predicate(key, value)) is not keep_when:
                return None
            return value

        return filtered

    def build_timestamped(self, context: ProcessorContext) -> TimestampedGetter:
        get = self._parent.build_timestamped(context)
        predicate, keep_when = self._predicate, self._keep_when

        def filtered(key: Any) -> tuple[Any, int] | None:
            entry = get(key)
            if entry is None or bool(predicate(key, entry[0])) is not keep_when:
                return None
            return entry

        return filtered


class MapValuesGetter(ValueGetter):
    def __init__(self, parent: ValueGetter, mapper: Callable[[Any], Any]) -> None:
        self.stores = parent.stores
        self._parent, self._mapper = parent, mapper

    def build(self, context: ProcessorContext) -> Getter:
        get, mapper = self._parent.build(context), self._mapper

        def mapped(key: Any) -> Any:
            value = get(key)
            return None if value is None else mapper(value)

        return mapped

    def build_timestamped(self, context: ProcessorContext) -> TimestampedGetter:
        get, mapper = self._parent.build_timestamped(context), self._mapper

        def mapped(key: Any) -> tuple[Any, int] | None:
            entry = get(key)
            return None if entry is None else (mapper(entry[0]), entry[1])

        return mapped


class JoinGetter(ValueGetter):
    """A table-table join result that is not materialized: computed from both sides."""

    def __init__(self, left: ValueGetter, right: ValueGetter, combine: Combine) -> None:
        self.stores = tuple(dict.fromkeys(left.stores + right.stores))
        self._left, self._right, self._combine = left, right, combine

    def build(self, context: ProcessorContext) -> Getter:
        left, right = self._left.build(context), self._right.build(context)
        combine = self._combine

        def joined(key: Any) -> Any:
            return combine(left(key), right(key))

        return joined

    def build_timestamped(self, context: ProcessorContext) -> TimestampedGetter:
        left = self._left.build_timestamped(context)
        right = self._right.build_timestamped(context)
        combine = self._combine

        def joined(key: Any) -> tuple[Any, int] | None:
            lt, rt = left(key), right(key)
            value = combine(None if lt is None else lt[0], None if rt is None else rt[0])
            if value is None:
                return None
            return value, max(NO_TIMESTAMP if lt is None else lt[1],
                              NO_TIMESTAMP if rt is None else rt[1])

        return joined


def join_rule(joiner: Callable[[Any, Any], Any], keep_left: bool, keep_right: bool) -> Combine:
    """The joined value of a key given both sides' values (None: absent).

    Inner: both present. Left: left present (right may be None). Outer: either present.
    """

    def combine(left: Any, right: Any) -> Any:
        if left is not None and right is not None:
            return joiner(left, right)
        if left is not None and keep_left:
            return joiner(left, None)
        if right is not None and keep_right:
            return joiner(None, right)
        return None

    return combine


class TableSourceOp(_Operator):
    """Materializes a topic as a table (latest value per key; None deletes) and forwards each
    update as Change(previous value, new value). The store keeps each value's record time,
    which table-table joins read (KIP-258)."""

    def __init__(self, store_name: str) -> None:
        self._store_name = store_name

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        store = timestamped_store(context, self._store_name)
        self._get, self._put = store.get, store.put_with_timestamp

    def process(self, record: Record) -> None:
        key = record.key
        if key is None:
            self.context._skip("null_key", record)
            return
        old = self._get(key)
        self._put(key, record.value, record.timestamp)
        record.value = Change(old, record.value)
        self._down(record)


class TableFilterOp(_Operator):
    """A filtered view: values failing the predicate read as absent, so a key whose value
    stops matching is deleted downstream, and one that never matched is never mentioned."""

    def __init__(self, predicate: Callable[[Any, Any], bool], keep_when: bool) -> None:
        self._predicate = predicate
        self._keep_when = keep_when

    def _keep(self, key: Any, value: Any) -> Any:
        if value is None or bool(self._predicate(key, value)) is not self._keep_when:
            return None
        return value

    def process(self, record: Record) -> None:
        change = record.value
        old, new = self._keep(record.key, change.old), self._keep(record.key, change.new)
        if old is None and new is None:
            return
        record.value = Change(old, new)
        self._down(record)


class TableMapValuesOp(_Operator):
    """`mapper(value) -> value` on both sides of each change (the old value is mapped again,
    as Kafka Streams does, so downstream operators see what this view held before)."""

    def __init__(self, mapper: Callable[[Any], Any]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        change, mapper = record.value, self._mapper
        record.value = Change(None if change.old is None else mapper(change.old),
                              None if change.new is None else mapper(change.new))
        self._down(record)


class TableJoinOp(Processor):
    """One side of a table-table join: a change on this side meets the other table's current
    value. Materialized (`store_name`): the result is stored and the old result read from
    there; otherwise the old result is recomputed from this side's old value.

    A result is stamped with the larger of the change's time and the other side's value's
    time (Kafka Streams, KIP-258); the change's own time when the other side has no value."""

    def __init__(self, this_is_left: bool, other: ValueGetter, combine: Combine,
                 store_name: str | None) -> None:
        self._left = this_is_left
        self._other = other
        self._combine = combine
        self._store_name = store_name

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream
        self._get_other = self._other.build_timestamped(context)
        self._store = (None if self._store_name is None
                       else timestamped_store(context, self._store_name))

    def process(self, record: Record) -> None:
        key = record.key
        if key is None:
            return
        change = record.value
        if change.old is None and change.new is None:
            return
        entry = self._get_other(key)
        other = None
        if entry is not None:
            other = entry[0]
            if entry[1] > record.timestamp:
                record.timestamp = entry[1]
        combine, store = self._combine, self._store
        if self._left:
            new = combine(change.new, other)
            old = combine(change.old, other) if store is None else store.get(key)
        else:
            new = combine(other, change.new)
            old = combine(other, change.old) if store is None else store.get(key)
        if store is not None:
            store.put_with_timestamp(key, new, record.timestamp)
        if old is None and new is None:
            return
        record.value = Change(old, new)
        self._down(record)


class TableRegroupOp(_Operator):
    """`Table.group_by`: `selector(key, value) -> (new key, new value)` on both sides of a
    change. The old value is removed from its group and the new one added to its group: one
    record carrying both when the group stays the same, else two (removal first)."""

    def __init__(self, selector: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        self._selector = selector

    def process(self, record: Record) -> None:
        change, key, selector = record.value, record.key, self._selector
        old = None if change.old is None else selector(key, change.old)
        new = None if change.new is None else selector(key, change.new)
        if old is not None and new is not None and old[0] == new[0]:
            if old[0] is not None:
                self._down(_regrouped(record, old[0], Change(old[1], new[1])))
            return
        if old is not None and old[0] is not None:
            self._down(_regrouped(record, old[0], Change(old[1], None)))
        if new is not None and new[0] is not None:
            self._down(_regrouped(record, new[0], Change(None, new[1])))


def _regrouped(record: Record, key: Any, change: Change) -> Record:
    headers = list(record.headers) if record.headers is not None else None
    return Record(key, change, record.timestamp, headers, record.topic, record.partition,
                  record.offset)


def timestamped_store(context: ProcessorContext, name: str) -> TimestampedKeyValueStore:
    """An aggregation's or table's store; the DSL builds it timestamped
    (KeyValueStoreBuilder.timestamped)."""
    store = context.get_store(name)
    if not isinstance(store, TimestampedKeyValueStore):
        raise TypeError(f"store {name!r} of {context.node_name!r} must be built with "
                        "timestamped=True (a table keeps its values' timestamps)")
    return store


class TableAggregateOp(_Operator):
    """Aggregates a re-grouped table: `subtractor(key, old value, agg)` then
    `adder(key, new value, agg)`, starting from `initializer()` (Kafka Streams'
    KTableAggregate). With `initializer` None (reduce), a group's first value is its
    aggregate. A None aggregate deletes the group."""

    def __init__(self, store_name: str, initializer: Callable[[], Any] | None,
                 adder: Callable[[Any, Any, Any], Any],
                 subtractor: Callable[[Any, Any, Any], Any]) -> None:
        self._store_name = store_name
        self._initializer = initializer
        self._adder = adder
        self._subtractor = subtractor

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        store = timestamped_store(context, self._store_name)
        self._get, self._put = store.get_with_timestamp, store.put_with_timestamp

    def process(self, record: Record) -> None:
        key, change = record.key, record.value
        if key is None:
            return
        entry = self._get(key)
        before = agg = None
        if entry is not None:
            before = agg = entry[0]
            if entry[1] > record.timestamp:  # KIP-258: the largest contributing timestamp
                record.timestamp = entry[1]
        if change.old is not None and agg is not None:
            agg = self._subtractor(key, change.old, agg)
        if change.new is not None:
            if agg is not None:
                agg = self._adder(key, change.new, agg)
            elif self._initializer is not None:
                agg = self._adder(key, change.new, self._initializer())
            else:
                agg = change.new
        if before is None and agg is None:
            return
        self._put(key, agg, record.timestamp)
        record.value = Change(before, agg)
        self._down(record)
