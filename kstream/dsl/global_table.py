"""Global tables: the whole of a topic in every instance, joined without co-partitioning.

A stream joins a GlobalTable by a lookup key computed from each record
(`key_selector(key, value)`), so neither side is repartitioned and the stream keeps its own
key. Semantics follow Kafka Streams' KStream-GlobalKTable join (KStreamKTableJoinProcessor):

* a record with a null value, or whose lookup key is None, is skipped (counted under
  `null_value` / `null_key`), in inner and left joins alike; `key_selector` is not called
  for a null value (Kafka Streams calls it, and most selectors would fail on None);
* except in a left join, a record with a null key and a value is joined (its lookup key may
  still find a row; None finds none);
* inner: records without a matching row are dropped; left: `joiner(value, None)`.

The lookup reads the global store as it is when the record is processed: the table is a cache
of its topic, updated by the engine between batches, not a time-aligned join.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl._ops import _Operator
from kstream.processor import ProcessorContext
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult
from kstream.runtime.task import SKIP_NULL_KEY, SKIP_NULL_VALUE
from serdes import Serde

if TYPE_CHECKING:
    from kstream.dsl.stream import Stream, StreamBuilder

Joiner = Callable[[Any, Any], Any]
KeySelector = Callable[[Any, Any], Any]


class GlobalTable:
    """A topic held whole by every instance (see `StreamBuilder.global_table`); join streams
    to it with `stream.join(global_table, key_selector, joiner)` / `left_join`, or read it
    from any processor with `context.get_store(store_name)`."""

    def __init__(self, builder: StreamBuilder, store_name: str, topic: str,
                 key_serde: Serde, value_serde: Serde) -> None:
        self._builder = builder
        self.store_name = store_name
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde

    def __repr__(self) -> str:
        return f"GlobalTable({self.store_name!r}, topic={self.topic!r})"


class GlobalTableJoinOp(_Operator, Fusable):
    """Looks each record's `key_selector(key, value)` up in the global store (see the module
    docstring for which records are skipped, dropped or joined with None)."""

    def __init__(self, store: str, key_selector: KeySelector, joiner: Joiner,
                 left: bool) -> None:
        self._store = store
        self._selector = key_selector
        self._joiner = joiner
        self._left = left

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self._get = context.get_store(self._store).get

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        if value is None:
            self.context._skip(SKIP_NULL_VALUE, record)
            return
        lookup = self._selector(key, value)
        if lookup is None and not (self._left and key is None):
            self.context._skip(SKIP_NULL_KEY, record)
            return
        other = None if lookup is None else self._get(lookup)
        if other is None and not self._left:
            return
        record.value = self._joiner(value, other)
        self._down(record)

    def _skipped(self, reason: str, key: Any, value: Any, ts: int, headers: Any,
                 offset: int, topic: str, partition: int) -> None:
        self.context._skip(reason, Record(key, value, ts, headers, topic, partition, offset))

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        sel, get = em.bind(self._selector, "gsel"), em.bind(self._get, "gget")
        joiner, skipped = em.bind(self._joiner, "gjoin"), em.bind(self._skipped, "gskip")
        lookup, other = em.local("glk"), em.local("gother")
        where = f"ts, headers, {em.offset}, TOPIC, PARTITION"
        em.line(depth, "if value is None:")
        em.line(depth + 1, f"{skipped}({SKIP_NULL_VALUE!r}, key, value, {where})")
        em.line(depth + 1, skip)
        em.line(depth, f"{lookup} = {sel}(key, value)")
        if self._left:
            em.line(depth, f"if {lookup} is None and key is not None:")
        else:
            em.line(depth, f"if {lookup} is None:")
        em.line(depth + 1, f"{skipped}({SKIP_NULL_KEY!r}, key, value, {where})")
        em.line(depth + 1, skip)
        em.line(depth, f"{other} = None if {lookup} is None else {get}({lookup})")
        if not self._left:
            em.line(depth, f"if {other} is None: {skip}")
        em.line(depth, f"value = {joiner}(value, {other})")
        return FuseResult(depth, skip)


def global_table_join(stream: Stream, table: GlobalTable, key_selector: KeySelector,
                      joiner: Joiner, left: bool, name: str | None) -> Stream:
    """The join node: no repartition, the stream's key (and key serde) stays."""
    store = table.store_name
    return stream._then("GLOBAL-JOIN",
                        lambda: GlobalTableJoinOp(store, key_selector, joiner, left), name,
                        True, False)
