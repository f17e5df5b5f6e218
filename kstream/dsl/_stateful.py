"""The DSL's stateful operators as processors: aggregations, table sources, table views, joins.

Records with a null key (and, for aggregations, a null value) are skipped, as in Kafka
Streams: they have no group to belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kstream.dsl._ops import _Operator
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record

Initializer = Callable[[], Any]
Adder = Callable[[Any, Any, Any], Any]  # (key, value, aggregate) -> aggregate


class AggregateOp(Processor):
    """Folds each record into its key's aggregate in a store and emits the new aggregate.

    With `emit_on_commit`, updates are coalesced per key and emitted when the task commits
    (a record cache): fewer, later updates, the same final values.
    """

    def __init__(self, store_name: str, initializer: Initializer, adder: Adder,
                 emit_on_commit: bool = False) -> None:
        self._store_name = store_name
        self._initializer = initializer
        self._adder = adder
        self._emit_on_commit = emit_on_commit
        self._pending: dict[Any, Record] = {}

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._store = context.get_store(self._store_name)
        self._get, self._put = self._store.get, self._store.put
        self._down = context._downstream

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        if key is None or value is None:
            return
        aggregate = self._get(key)
        if aggregate is None:
            aggregate = self._initializer()
        aggregate = self._adder(key, value, aggregate)
        self._put(key, aggregate)
        record.value = aggregate
        if self._emit_on_commit:
            self._pending[key] = record
        else:
            self._down(record)

    def flush_cache(self) -> None:
        """Called by the task before it commits: emit the latest aggregate per key."""
        pending, self._pending = self._pending, {}
        for record in pending.values():
            self._down(record)

    def discard_cache(self) -> None:
        self._pending.clear()


class _StoreOperator(Processor):
    """An operator that reads or writes one named store and forwards downstream."""

    _store_name: str

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._store = context.get_store(self._store_name)
        self._down = context._downstream


class TableSourceOp(_StoreOperator):
    """Materializes a topic as a table (latest value per key; None deletes) and emits changes."""

    def __init__(self, store_name: str) -> None:
        self._store_name = store_name

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        self._store.put(record.key, record.value)
        self._down(record)


class TableFilterOp(_Operator):
    """A filtered view: a change that no longer matches becomes a delete (tombstone)."""

    def __init__(self, predicate: Callable[[Any, Any], bool], keep_when: bool) -> None:
        self._predicate = predicate
        self._keep_when = keep_when

    def process(self, record: Record) -> None:
        if record.value is not None and (
                bool(self._predicate(record.key, record.value)) is not self._keep_when):
            record.value = None
        self._down(record)


class TableMapValuesOp(_Operator):
    def __init__(self, mapper: Callable[[Any], Any]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        if record.value is not None:
            record.value = self._mapper(record.value)
        self._down(record)


class StreamTableJoinOp(_StoreOperator):
    """Joins each stream record with the table's current value for its key (a lookup)."""

    def __init__(self, store_name: str, joiner: Callable[[Any, Any], Any], left: bool) -> None:
        self._store_name = store_name
        self._joiner = joiner
        self._left = left

    def process(self, record: Record) -> None:
        if record.key is None:
            return
        other = self._store.get(record.key)
        if other is None and not self._left:
            return
        record.value = self._joiner(record.value, other)
        self._down(record)
