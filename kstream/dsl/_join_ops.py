"""Stream-stream windowed joins: one processor per side, sharing three stores per task.

    left ──► StreamStreamJoinOp(left)  ──┐   this store: left records    (window store)
                                         ├─► merge     other store: right records
    right ─► StreamStreamJoinOp(right) ──┘   outer store: unmatched records awaiting close

A record at t (key k) is buffered in its side's window store under (k, t, id) — `id` makes
every record its own entry, so duplicates of (k, t) are all kept — and joined with the other
side's records of k within the window: [t - before, t + after] for a left record,
[t - after, t + before] for a right one. Joined results carry max(t, other's t).

Semantics the join keeps (and tests check against a brute-force model):
* Late: a record with t < stream time - grace is dropped, counted in `task.dropped_late` and
  optionally dead-lettered; it is never joined. (Kafka Streams still joins it against what
  is buffered and, in left/outer joins, may emit it unmatched at once.)
* Unmatched (left/outer joins): a record that found no partner waits in the outer store until
  no partner can arrive any more, i.e. stream time > t + after + grace (left) or
  t + before + grace (right): any later non-late partner would have a time >= stream time -
  grace, outside the window. Then `joiner(value, None)` (or `joiner(None, value)`) is emitted
  with the record's own time, exactly once: the outer entry is deleted in the same commit as
  the emission, and a partner arriving earlier deletes it instead. So an unmatched result
  is never followed by a joined result for the same record.
* Retention: window stores keep before + after + grace of stream time (segments expire
  after that); a non-late record's partners are always younger than that.
* Stream time is the task's (largest record time seen, restored after restarts).
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable
from typing import Any

from kstream.dsl._windowed_ops import LateRecords
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.state.kv import KeyValueStore
from kstream.state.window_store import OFFSET, WindowStore
from serdes import Serde, SerdeContext

_TIME = struct.Struct(">Q")
_HEAD = struct.Struct(">QI")  # window store key head: segment, len(key bytes)
_ID = struct.Struct(">QQHI")  # t, offset, source topic index, fan-out counter
_NEVER = 2**63
LEFT, RIGHT = 0, 1


class OuterBuffer:
    """The outer store of one task, shared by both sides' processors.

    Keys: `close time (8) | side (1) | window-store key without its segment`, so entries sort
    by close time and the key of a buffered record's outer entry follows from its window store
    key. Values: the record's value bytes. `next_close` caches the smallest close time (it may
    be stale-low after partners deleted entries; a scan then finds nothing and refreshes it).
    """

    _shared: weakref.WeakKeyDictionary[KeyValueStore, OuterBuffer] = weakref.WeakKeyDictionary()

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self._next_close: int | None = None

    @classmethod
    def of(cls, store: KeyValueStore) -> OuterBuffer:
        """The one buffer of this store instance (both side processors must share it)."""
        buffer = cls._shared.get(store)
        if buffer is None:
            buffer = cls._shared[store] = cls(store)
        return buffer

    @property
    def next_close(self) -> int:
        if self._next_close is None:
            first = next(iter(self.store.all()), None)
            self._next_close = _NEVER if first is None else _close_of(first[0])
        return self._next_close

    def add(self, side: int, close: int, wkey: bytes, value: bytes) -> None:
        self.store.put(outer_key(side, close, wkey), value)
        if self._next_close is not None and close < self._next_close:
            self._next_close = close

    def matched(self, side: int, close: int, wkey: bytes) -> None:
        """A partner arrived: the record will never be emitted unmatched."""
        okey = outer_key(side, close, wkey)
        if self.store.get(okey) is not None:
            self.store.delete(okey)

    def pop_due(self, stream_time: int) -> list[tuple[int, bytes, int, bytes]]:
        """(side, key bytes, time, value bytes) of entries closed at `stream_time`, deleted."""
        due: list[tuple[bytes, bytes]] = []
        following = _NEVER
        for okey, value in self.store.all():
            close = _close_of(okey)
            if close >= stream_time:
                following = close
                break
            due.append((okey, value))
        self._next_close = following
        out = []
        for okey, value in due:
            self.store.delete(okey)
            (n,) = struct.unpack_from(">I", okey, 9)
            (t,) = _TIME.unpack_from(okey, 13 + n)
            out.append((okey[8], okey[13:13 + n], t - OFFSET, value))
        return out

    def reset(self) -> None:
        """The transaction aborted: the cached close time may describe discarded writes."""
        self._next_close = None


def outer_key(side: int, close: int, wkey: bytes) -> bytes:
    return _TIME.pack(close + OFFSET) + bytes((side,)) + wkey[8:]


def _close_of(okey: bytes) -> int:
    return int(_TIME.unpack_from(okey)[0]) - OFFSET


class StreamStreamJoinOp(Processor):
    """One side of a windowed stream-stream join (see the module docstring).

    `joiner(left_value, right_value) -> value` whichever side a record arrived on;
    `before`/`after` are this side's view: a right-side processor gets them swapped.
    `emit_unmatched`: this side's records are emitted alone when unmatched (left side of a
    left join, both sides of an outer join); `other_unmatched`: the other side's are.
    """

    def __init__(self, side: int, this_store: str, other_store: str, outer_store: str | None,
                 joiner: Callable[[Any, Any], Any], before: int, after: int, grace: int,
                 emit_unmatched: bool, other_unmatched: bool, late_dead_letter: bool,
                 key_serde: Serde, value_serde: Serde, other_value_serde: Serde) -> None:
        self._side = side
        self._stores = (this_store, other_store, outer_store)
        self._joiner = joiner
        self._before, self._after, self._grace = before, after, grace
        # An unmatched record of this side closes at t + after + grace; the other side's at
        # t + before + grace (its own `after` is our `before`).
        self._emit_unmatched = emit_unmatched
        self._other_unmatched = other_unmatched
        self._late_dead_letter = late_dead_letter
        self._key_serde = key_serde
        self._value_serdes = ((value_serde, other_value_serde) if side == LEFT
                              else (other_value_serde, value_serde))
        self._last_topic: str | None = None
        self._last_offset = -2
        self._fan_out = 0

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        task = self._task = context._task
        self._down = context._downstream
        this_name, other_name, outer_name = self._stores
        self._this: WindowStore = context.get_store(this_name)
        self._other: WindowStore = context.get_store(other_name)
        self._outer = None if outer_name is None else OuterBuffer.of(context.get_store(outer_name))
        self._late = LateRecords(context, self._late_dead_letter, self._key_serde,
                                 self._value_serdes[self._side], context.node_name)
        self._topic_index = {t: i for i, t in enumerate(sorted(task.sub.source_topics))}
        this_serde = self._value_serdes[self._side]
        self._ctx = SerdeContext(topic=self._this.changelog_topic)
        self._ser_value = this_serde.serialize
        self._de_key = self._key_serde.deserialize
        self._segment_ms = self._this.segment_ms
        self._next_expiry = -1

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        if value is None:
            return  # nothing to join (a null value is not a record of either side)
        if key is None:
            if self._emit_unmatched:  # as Kafka Streams: cannot match, so emitted at once
                self._forward_alone(record, value)
            return
        st = self._task.stream_time
        ts = record.timestamp
        if ts < st - self._grace:
            self._late(record, st)
            return
        outer = self._outer
        if outer is not None and outer.next_close < st:
            self._emit_closed(outer, st)
        this, other = self._this, self._other
        kb = this.key_bytes(key)
        wkey = self._store_key(kb, ts, record)
        this.append_raw(wkey, value)
        matched = False
        joiner, left = self._joiner, self._side == LEFT
        other_close = self._before + self._grace
        for okey, ots, ovalue in other.fetch_starts(kb, ts - self._before, ts + self._after):
            matched = True
            joined = joiner(value, ovalue) if left else joiner(ovalue, value)
            headers = list(record.headers) if record.headers is not None else None
            self._down(Record(key, joined, ts if ts > ots else ots, headers, record.topic,
                              record.partition, record.offset))
            if self._other_unmatched:
                assert outer is not None
                outer.matched(1 - self._side, ots + other_close, okey)
        if not matched and self._emit_unmatched:
            assert outer is not None
            data = self._ser_value(value, self._ctx)
            outer.add(self._side, ts + self._after + self._grace, wkey,
                      b"" if data is None else data)
        if st >= self._next_expiry:
            this.expire(st)
            other.expire(st)
            self._next_expiry = this.next_expiry(st)

    def _store_key(self, kb: bytes, ts: int, record: Record) -> bytes:
        """The window store key of this record: `segment | len | key | t | offset | topic
        index | counter` (the window store layout with t1 = t, t2 = offset, plus 6 bytes).

        Unique per record and the same on replay, so duplicates of (key, t) are all kept and a
        restarted task never overwrites an older entry. Records of one input offset (a
        flat_map's outputs) are told apart by the counter; records forwarded by punctuators
        (offset -1) share offset -1 and count on (unique within one run only)."""
        topic, offset = record.topic, record.offset
        if offset == self._last_offset and topic == self._last_topic:
            self._fan_out += 1
        else:
            self._last_offset, self._last_topic = offset, topic
            if offset >= 0:
                self._fan_out = 0
        return (_HEAD.pack(ts // self._segment_ms + OFFSET, len(kb)) + kb
                + _ID.pack(ts + OFFSET, offset + OFFSET,
                           self._topic_index.get(topic or "", 0xFFFF) & 0xFFFF,
                           self._fan_out & 0xFFFFFFFF))

    def _forward_alone(self, record: Record, value: Any) -> None:
        record.value = (self._joiner(value, None) if self._side == LEFT
                        else self._joiner(None, value))
        self._down(record)

    def _emit_closed(self, outer: OuterBuffer, stream_time: int) -> None:
        for side, kb, ts, data in outer.pop_due(stream_time):
            key = self._de_key(kb, self._ctx)
            value = self._value_serdes[side].deserialize(data, self._ctx)
            joined = self._joiner(value, None) if side == LEFT else self._joiner(None, value)
            self._down(Record(key, joined, ts, None, None, self._task.partition, -1))

    def flush_cache(self) -> None:
        """Nothing is held in memory: unmatched records wait in the outer store."""

    def discard_cache(self) -> None:
        if self._outer is not None:
            self._outer.reset()
        self._next_expiry = -1
        self._last_offset = -2

