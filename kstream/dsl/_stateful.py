"""The DSL's stream aggregation and stream-table join processors, and the plain-value views
of windowed tables. (Table operators on Change records are in _table_ops.)

Records with a null key (and, for aggregations, a null value) are skipped, as in Kafka
Streams: they have no group to belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kstream.dsl._change import Change
from kstream.dsl._ops import _Operator
from kstream.dsl._table_ops import ValueGetter, timestamped_store
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult

Initializer = Callable[[], Any]
_MISS = object()
Adder = Callable[[Any, Any, Any], Any]  # (key, value, aggregate) -> aggregate


class AggregateOp(Processor, Fusable):
    """Folds each record into its key's aggregate in a store and forwards
    Change(previous aggregate, new aggregate) (its result is a table).

    The update is stamped with the largest timestamp that contributed to the aggregate
    (KIP-258), kept with it in the store (a timestamped store): an update caused by an older
    record does not go back in time, before or after a restart.

    With `emit_on_commit`, updates are coalesced per key and emitted when the task commits
    (a record cache): fewer, later updates, the same final values; a coalesced change keeps
    the aggregate from before its first update as `old`.

    The aggregation also has a fused form (`fuse`, beside `process`): the source's generated
    chain folds key and value from its locals and writes the store inline; emitting per update
    it runs the downstream (to_stream, sinks) inline too, without a Record per input; emitting
    on commit it keeps the Record `process` would keep.
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
        self._store = timestamped_store(context, self._store_name)
        self._get, self._put = self._store.get_with_timestamp, self._store.put_with_timestamp
        self._down = context._downstream

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        if key is None or value is None:
            self.context._skip("null_key" if key is None else "null_value", record)
            return
        entry = self._get(key)
        if entry is None:
            old, aggregate = None, self._initializer()
        else:
            old = aggregate = entry[0]
            if entry[1] > record.timestamp:
                record.timestamp = entry[1]
        aggregate = self._adder(key, value, aggregate)
        self._put(key, aggregate, record.timestamp)
        if self._emit_on_commit:
            earlier = self._pending.get(key)
            record.value = Change(old if earlier is None else earlier.value.old, aggregate)
            self._pending[key] = record
        else:
            record.value = Change(old, aggregate)
            self._down(record)

    # Fused form of `process`: the same store get, initializer, adder and put in the same
    # order; a skipped record gets the same Record `process` would see. A read-cache hit is
    # taken inline (the store's str_key_cache), anything else asks get. Emitting per update,
    # the children's lines follow; emitting on commit, the record `process` would keep goes
    # into the same pending map (flush_cache hands it to the children, as for `process`).
    def can_fuse(self) -> bool:
        return True

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        entry, old, agg = em.local("entry"), em.local("old"), em.local("agg")
        skip_fn = em.bind(self._skip_record, "skipagg")
        em.line(depth, "if key is None or value is None:")
        em.line(depth + 1, f"{skip_fn}(Record(key, value, ts, headers, TOPIC, PARTITION, "
                           f"{em.offset})); {skip}")
        aget = em.bind(self._get, "aget")
        cache = getattr(self._store, "str_key_cache", None)
        if cache is None:
            em.line(depth, f"{entry} = {aget}(key)")
        else:  # a cache hit without a call: what get_with_timestamp would return
            miss = em.bind(_MISS, "MISS")
            em.line(depth, f"{entry} = {em.bind(cache.get, 'acached')}(key, {miss}) "
                           f"if type(key) is str else {miss}")
            em.line(depth, f"if {entry} is {miss}: {entry} = {aget}(key)")
        em.line(depth, f"if {entry} is None: {old} = None; "
                       f"{agg} = {em.bind(self._initializer, 'ainit')}()")
        em.line(depth, "else:")
        em.line(depth + 1, f"{old} = {agg} = {entry}[0]")
        em.line(depth + 1, f"if {entry}[1] > ts: ts = {entry}[1]")
        em.line(depth, f"{agg} = {em.bind(self._adder, 'add')}(key, value, {agg})")
        fuse_put = getattr(self._store, "fuse_put_with_timestamp", None)
        key_bytes = None
        if fuse_put is not None:
            stored, key_bytes = fuse_put(em, depth, agg)
        else:
            stored = em.local("stored")
            em.line(depth, f"{stored} = {em.bind(self._put, 'aput')}(key, {agg}, ts)")
        if self._emit_on_commit:
            earlier, pending = em.local("earlier"), em.bind(self._pending, "pending")
            em.line(depth, f"{earlier} = {pending}.get(key)")
            em.line(depth, f"{pending}[key] = Record(key, {em.bind(Change, 'Change')}({old} if "
                           f"{earlier} is None else {earlier}.value.old, {agg}), ts, headers, "
                           f"TOPIC, PARTITION, {em.offset})")
            em.line(depth, skip)
            return FuseResult(depth, skip, children_elsewhere=True)
        em.assign_change(depth, em.bind(Change, "Change"), old, agg)
        # A sink right after to_stream() reuses the stored bytes.
        fast = getattr(self._store, "fast_value_serializer", None)
        if fast is not None:
            em.note_encoding(fast, agg, stored)
        fast_key = getattr(self._store, "fast_key_serializer", None)
        if fast_key is not None and key_bytes is not None:
            em.note_key_bytes(fast_key, key_bytes)
        return FuseResult(depth, skip)

    def _skip_record(self, record: Record) -> None:
        self.context._skip("null_key" if record.key is None else "null_value", record)

    def flush_cache(self) -> None:
        """Called by the task before it commits: emit the latest aggregate per key."""
        # Emptied in place: the fused form holds this very dict.
        pending = list(self._pending.values())
        self._pending.clear()
        for record in pending:
            self._down(record)

    def discard_cache(self) -> None:
        self._pending.clear()


class PlainTableFilterOp(_Operator):
    """A filtered view of a windowed table (plain values): a value that does not match
    becomes a delete (tombstone)."""

    def __init__(self, predicate: Callable[[Any, Any], bool], keep_when: bool) -> None:
        self._predicate = predicate
        self._keep_when = keep_when

    def process(self, record: Record) -> None:
        if record.value is not None and (
                bool(self._predicate(record.key, record.value)) is not self._keep_when):
            record.value = None
        self._down(record)


class PlainTableMapValuesOp(_Operator):
    """`mapper(value)` on a windowed table's plain values (deletes stay deletes)."""

    def __init__(self, mapper: Callable[[Any], Any]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        if record.value is not None:
            record.value = self._mapper(record.value)
        self._down(record)


class StreamTableJoinOp(Processor):
    """Joins each stream record with the table's current value for its key (a lookup)."""

    def __init__(self, table: ValueGetter, joiner: Callable[[Any, Any], Any],
                 left: bool) -> None:
        self._table = table
        self._joiner = joiner
        self._left = left

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._get = self._table.build(context)
        self._down = context._downstream

    def process(self, record: Record) -> None:
        if record.key is None:
            self.context._skip("null_key", record)
            return
        other = self._get(record.key)
        if other is None and not self._left:
            return
        record.value = self._joiner(record.value, other)
        self._down(record)
