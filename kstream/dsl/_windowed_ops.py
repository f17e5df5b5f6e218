"""Windowed aggregation processors: time (tumbling/hopping), sliding and session windows.

Emit modes:
* "update": every change of a window's aggregate goes downstream at once, stamped with the
  largest record time the window holds (KIP-258: an update caused by an older record does
  not go back in time; time windows keep it with the aggregate in a timestamped store,
  sliding windows in their value, sessions as their end); a session replaced by a merge is
  retracted with a tombstone (value None) stamped with its end.
* "final": one result per window when it closes (stream time >= close time). Which windows
  still owe a result lives in a changelog-backed index store, keyed by close time; emitting
  deletes the entry in the same transaction as the result (see PendingEmits), so under
  exactly-once a result is emitted once across crashes and restarts. Final results are stamped
  with the largest time the window holds: end - 1 for tumbling/hopping windows, the latest
  record's time for sliding windows and sessions.

Close times (the stream time at which a window is final): end + grace for [start, end)
windows; end + grace + 1 for sliding windows, whose end is inclusive (as Kafka Streams);
end + gap + grace + 1 for sessions, which any record within the gap could still extend. A
record with no open window left is late:
counted in `task.dropped_late` and, with late="dead_letter", sent to `<application_id>-dlq`.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable
from typing import Any

import orjson

from kstream.errors import STAGE_LATE, LateRecord, RecordError, dead_letter_headers
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult
from kstream.state.backend import NO_TIMESTAMP
from kstream.state.kv import KeyValueStore
from kstream.state.window_store import OFFSET, SegmentedStore, decode_store_key
from serdes import Serde, SerdeContext, Windowed

Initializer = Callable[[], Any]
Adder = Callable[[Any, Any, Any], Any]  # (key, value, aggregate) -> aggregate
Merger = Callable[[Any, Any, Any], Any]  # (key, aggregate, aggregate) -> aggregate

_CLOSE = struct.Struct(">Q")
_NEVER = 2**63


class PendingEmits:
    """Windows that still owe a final result, by close time.

    Durable part: an index store keyed `close time (8 bytes) | window store key`, written and
    deleted through the task's buffered, changelogged store, so "emitted" commits atomically
    with the emitted record. In-memory part: a heap of the same entries for the cheap "is
    anything due" check, rebuilt from the store whenever it may be stale (new task, abort).
    """

    def __init__(self, index: KeyValueStore) -> None:
        self._index = index
        self._heap: list[tuple[int, bytes]] | None = None

    @property
    def next_close(self) -> int:
        heap = self._heap
        if heap is None:
            heap = self._heap = [(_CLOSE.unpack_from(k)[0] - OFFSET, k[8:])
                                 for k, _ in self._index.all()]
            heapq.heapify(heap)
        return heap[0][0] if heap else _NEVER

    def add(self, close: int, skey: bytes) -> None:
        self._index.put(_CLOSE.pack(close + OFFSET) + skey, b"")
        if self._heap is not None:
            heapq.heappush(self._heap, (close, skey))

    def remove(self, close: int, skey: bytes) -> None:
        """The window was replaced (a merged session): it will never have a result."""
        self._index.delete(_CLOSE.pack(close + OFFSET) + skey)

    def pop_due(self, stream_time: int) -> list[bytes]:
        """Window store keys closed at `stream_time`, oldest first; their entries are deleted."""
        if self.next_close > stream_time:
            return []
        heap, index = self._heap, self._index
        assert heap is not None
        due = []
        while heap and heap[0][0] <= stream_time:
            close, skey = heapq.heappop(heap)
            ikey = _CLOSE.pack(close + OFFSET) + skey
            if index.get(ikey) is not None:  # else removed by a merge, or a duplicate push
                index.delete(ikey)
                due.append(skey)
        return due

    def reset(self) -> None:
        self._heap = None


class LateRecords:
    """Counts late records on the task and, if configured, dead-letters them."""

    def __init__(self, context: ProcessorContext, dead_letter: bool, key_serde: Serde,
                 value_serde: Serde, operator: str) -> None:
        self._task = context._task
        self._dead_letter = dead_letter
        self._dlq = f"{context.application_id}-dlq"
        self._key_serde, self._value_serde = key_serde, value_serde
        self._ctx = SerdeContext(topic=self._dlq)
        self._operator = operator

    def __call__(self, record: Record, stream_time: int) -> None:
        self._task.dropped_late += 1
        if not self._dead_letter:
            return
        reason = LateRecord(f"record time {record.timestamp} is too late for every window of "
                            f"{self._operator} (stream time {stream_time})")
        error = RecordError(STAGE_LATE, str(record.topic), _int(record.partition),
                            _int(record.offset), reason)
        headers = dead_letter_headers(error, record.headers)
        self._task.collector.send(self._dlq, self._bytes(self._key_serde, record.key, True),
                                  self._bytes(self._value_serde, record.value, False),
                                  record.timestamp, headers)

    def _bytes(self, serde: Serde, obj: Any, is_key: bool) -> bytes | None:
        """With the stream's serde (what was read), else JSON: the record must not be lost."""
        self._ctx.is_key = is_key
        try:
            return serde.serialize(obj, self._ctx)
        except Exception:
            return orjson.dumps(obj, default=repr)


class _WindowedAggregate(Processor):
    """Shared wiring: stores, late handling, final emission and expiry checks."""

    def __init__(self, store_name: str, index_name: str | None, initializer: Initializer,
                 adder: Adder, grace: int, late_dead_letter: bool, key_serde: Serde,
                 value_serde: Serde) -> None:
        self._store_name = store_name
        self._index_name = index_name
        self._init = initializer
        self._adder = adder
        self._grace = grace
        self._late_dead_letter = late_dead_letter
        self._in_key_serde, self._in_value_serde = key_serde, value_serde
        self._next_check = -1  # stream time at which to look for due results / expiry

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._task = context._task
        self._down = context._downstream
        self._store: SegmentedStore = context.get_store(self._store_name)
        self._final = self._index_name is not None
        self._pending = (PendingEmits(context.get_store(self._index_name))
                         if self._index_name is not None else None)
        self._late = LateRecords(context, self._late_dead_letter, self._in_key_serde,
                                 self._in_value_serde, context.node_name)
        self._de_key = self._store._de_key
        self._key_ctx = self._store._ctx
        self._next_expiry = -1

    def _maintain(self, stream_time: int) -> None:
        """Emit results of windows that closed, then drop expired segments (in this order:
        a window is always emitted before it can expire)."""
        pending = self._pending
        if pending is not None and pending.next_close <= stream_time:
            for skey in pending.pop_due(stream_time):
                self._emit_final(skey)
        if stream_time >= self._next_expiry:
            self._store.expire(stream_time)
            self._next_expiry = self._store.next_expiry(stream_time)
        self._next_check = (self._next_expiry if pending is None
                            else min(self._next_expiry, pending.next_close))

    def _emit_final(self, skey: bytes) -> None:
        raise NotImplementedError

    def flush_cache(self) -> None:
        """Nothing is held back in memory: pending results live in the index store."""

    def discard_cache(self) -> None:
        """The transaction aborted: in-memory views of the stores may be ahead of them."""
        if self._pending is not None:
            self._pending.reset()
        self._next_check = -1
        self._next_expiry = -1


class TimeWindowAggregateOp(_WindowedAggregate, Fusable):
    """Tumbling and hopping windows: each record updates every open window holding it.

    Hot path: windows updated since the last commit live in a dict `(key, start) ->
    [Windowed, aggregate, largest record time]` and reach the store once per commit
    (flush_cache, called by the task before the stores send their changelogs), or before
    final results are emitted or segments expire. An update is then a dict lookup and the
    adder: no key encoding or value (de)serialization per record. Unhashable keys bypass the
    dict.

    Tumbling windows with emit="update" also have a fused form (`fuse`, beside `process`).
    """

    MAX_DIRTY = 50_000  # windows held before an early flush into the store's write buffer

    def __init__(self, store_name: str, index_name: str | None, windows: Any,
                 initializer: Initializer, adder: Adder, late_dead_letter: bool,
                 key_serde: Serde, value_serde: Serde) -> None:
        super().__init__(store_name, index_name, initializer, adder, windows.grace,
                         late_dead_letter, key_serde, value_serde)
        self._size = windows.size
        self._tumbling = windows.advance == windows.size
        self._window_starts = windows.window_starts
        self._dirty: dict[tuple[Any, int], list[Any]] = {}

    def process(self, record: Record) -> None:
        key = record.key
        value = record.value
        if key is None or value is None:
            self.context._skip("null_key" if key is None else "null_value", record)
            return
        st = self._task.stream_time
        ts = record.timestamp
        if self._tumbling:
            start = ts - ts % self._size
            if start + self._size <= st - self._grace:
                self._late(record, st)
            else:
                ck = (key, start)
                try:
                    entry = self._dirty.get(ck)
                except TypeError:  # unhashable key: cache by its bytes
                    ck = (self._store.key_bytes(key), start)
                    entry = self._dirty.get(ck)
                if entry is None:
                    entry = self._load(key, start, ck)
                entry[1] = agg = self._adder(key, value, entry[1])
                if entry[2] > ts:
                    record.timestamp = entry[2]
                else:
                    entry[2] = ts
                if self._pending is None:
                    record.key = entry[0]
                    record.value = agg
                    self._down(record)
        else:
            self._hopping(record, key, value, ts, st)
        if st >= self._next_check:
            self._maintain(st)

    # Fused form of `process` for tumbling windows with emit="update": the common case (a
    # window update, nothing due) inline. Records that skip or arrive late, unhashable keys,
    # and the record at which expiry is due (`_maintain` must run after its forward, and the
    # children's lines come after these) take `process` itself, which forwards through the
    # same children.
    def can_fuse(self) -> bool:
        return self._tumbling and self._index_name is None

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        op, task = em.bind(self, "wop"), em.bind(self._task, "wtask")
        size, grace = em.bind(self._size, "wsize"), em.bind(self._grace, "wgrace")
        st, start, ck, entry, agg = (em.local(p) for p in ("st", "start", "ck", "entry", "agg"))
        slow = (f"{op}.process(Record(key, value, ts, headers, TOPIC, PARTITION, {em.offset}));"
                f" {skip}")
        em.line(depth, f"{st} = {task}.stream_time")
        em.line(depth, f"{start} = ts - ts % {size}")
        em.line(depth, f"if (key is None or value is None or {start} + {size} <= {st} - {grace}"
                       f" or {st} >= {op}._next_check):")
        em.line(depth + 1, slow)
        em.line(depth, f"{ck} = (key, {start})")
        em.line(depth, "try:")
        em.line(depth + 1, f"{entry} = {em.bind(self._dirty, 'wdirty')}.get({ck})")
        em.line(depth, "except TypeError:")
        em.line(depth + 1, slow)
        em.line(depth, f"if {entry} is None: {entry} = {op}._load(key, {start}, {ck})")
        em.line(depth, f"{entry}[1] = {agg} = {em.bind(self._adder, 'wadd')}(key, value, "
                       f"{entry}[1])")
        em.line(depth, f"if {entry}[2] > ts: ts = {entry}[2]")
        em.line(depth, f"else: {entry}[2] = ts")
        em.line(depth, f"key = {entry}[0]; value = {agg}")
        return FuseResult(depth, skip)

    def _hopping(self, record: Record, key: Any, value: Any, ts: int, st: int) -> None:
        size, dirty = self._size, self._dirty
        close_after = st - self._grace
        updated = False
        for start in self._window_starts(ts):
            if start + size <= close_after:
                continue
            updated = True
            ck = (key, start)
            try:
                entry = dirty.get(ck)
            except TypeError:
                ck = (self._store.key_bytes(key), start)
                entry = dirty.get(ck)
            if entry is None:
                entry = self._load(key, start, ck)
            entry[1] = agg = self._adder(key, value, entry[1])
            if entry[2] < ts:
                entry[2] = ts
            if self._pending is None:
                self._down(Record(entry[0], agg, entry[2], _copy(record.headers), record.topic,
                                  record.partition, record.offset))
        if not updated:
            self._late(record, st)

    def _load(self, key: Any, start: int, ck: tuple[Any, int]) -> list[Any]:
        """The window's cache entry, from the store or new (then owing a final result)."""
        end = start + self._size
        store = self._store
        skey = store.store_key(store.key_bytes(key), start, end)
        found = store.get_raw_with_timestamp(skey)
        if found is None:
            agg, stamp = self._init(), NO_TIMESTAMP
            if self._pending is not None:
                self._pending.add(end + self._grace, skey)
        else:
            agg, stamp = found
        entry = self._dirty[ck] = [Windowed(key, start, end), agg, stamp]
        if len(self._dirty) > self.MAX_DIRTY:
            self.flush_cache()
        return entry

    def flush_cache(self) -> None:
        """Write the windows updated since the last flush into the store (its buffer)."""
        dirty = self._dirty
        if not dirty:
            return
        store = self._store
        key_bytes, store_key, put = store.key_bytes, store.store_key, store.put_raw_with_timestamp
        for window, agg, stamp in dirty.values():
            put(store_key(key_bytes(window.key), window.start, window.end), agg, stamp)
        dirty.clear()

    def discard_cache(self) -> None:
        self._dirty.clear()
        super().discard_cache()

    def _maintain(self, stream_time: int) -> None:
        self.flush_cache()  # emission and expiry read the store
        super()._maintain(stream_time)

    def _emit_final(self, skey: bytes) -> None:
        agg = self._store.get_raw(skey)
        if agg is None:
            return
        kb, start, end = decode_store_key(skey)
        self._down(Record(Windowed(self._de_key(kb, self._key_ctx), start, end), agg, end - 1,
                          None, None, self._task.partition, -1))


class SlidingWindowAggregateOp(_WindowedAggregate):
    """Kafka Streams' sliding-window algorithm (KStreamSlidingWindowAggregate, forward scan).

    Windows `[s, s + d]` exist only where records are; each stores (max record time,
    aggregate). A record updates the windows holding it and creates its left window
    `[t - d, t]` (its aggregate derived from the latest window ending before t), the right
    window of the previous record, and its own right window `[t + 1, t + 1 + d]` when later
    records fall in it.
    """

    def __init__(self, store_name: str, index_name: str | None, windows: Any,
                 initializer: Initializer, adder: Adder, late_dead_letter: bool,
                 key_serde: Serde, value_serde: Serde) -> None:
        super().__init__(store_name, index_name, initializer, adder, windows.grace,
                         late_dead_letter, key_serde, value_serde)
        self._d = windows.max_difference

    def process(self, record: Record) -> None:
        key = record.key
        if key is None or record.value is None:
            self.context._skip("null_key" if key is None else "null_value", record)
            return
        st = self._task.stream_time
        ts = record.timestamp
        d = self._d
        cut = st - self._grace  # windows with end >= cut are open
        if ts + 1 + d <= cut or not self._aggregate(record, key, ts, d, cut):
            self._late(record, st)
        if st >= self._next_check:
            self._maintain(st)

    def _aggregate(self, record: Record, key: Any, ts: int, d: int, cut: int) -> bool:
        store = self._store
        kb = store.key_bytes(key)
        starts: set[int] = set()
        left_agg: tuple[int, Any] | None = None
        right_agg: tuple[int, Any] | None = None
        left_exists = right_exists = False
        prev_ts: int | None = None
        updated = False
        for skey, start, end, val in list(store.fetch_raw(kb, ts - 2 * d, ts + 1)):  # type: ignore[attr-defined]
            starts.add(start)
            if end < ts:
                left_agg, prev_ts = val, val[0]
            elif end == ts:
                left_exists = True
                if val[0] < ts:
                    prev_ts = val[0]
                updated |= self._update(record, key, skey, start, end, val, cut, False)
            elif start <= ts:
                right_agg = val
                updated |= self._update(record, key, skey, start, end, val, cut, False)
            elif start == ts + 1:
                right_exists = True
            else:
                raise RuntimeError(f"sliding windows: unexpected window [{start}, {end}] for "
                                   f"a record at {ts} in store {store.name!r}")
        if prev_ts is not None:
            prev_right = prev_ts + 1
            if prev_right not in starts and prev_right + d >= ts:
                updated |= self._update(record, key, store.store_key(kb, prev_right,
                                                                     prev_right + d),
                                        prev_right, prev_right + d, None, cut, True)
        if not left_exists:
            base = ((ts, left_agg[1]) if left_agg is not None and prev_ts is not None
                    and ts - d <= prev_ts else None)
            updated |= self._update(record, key, store.store_key(kb, ts - d, ts), ts - d, ts,
                                    base, cut, True)
        if not right_exists and right_agg is not None and right_agg[0] > ts:
            start, end = ts + 1, ts + 1 + d
            skey = store.store_key(kb, start, end)
            store.put_raw(skey, right_agg)
            self._created(record, key, skey, start, end, right_agg[1], right_agg[0])
        return updated

    def _update(self, record: Record, key: Any, skey: bytes, start: int, end: int,
                val: tuple[int, Any] | None, cut: int, new: bool) -> bool:
        if end < cut:
            return False
        agg = self._adder(key, record.value, self._init() if val is None else val[1])
        stamp = record.timestamp if val is None else max(record.timestamp, val[0])
        self._store.put_raw(skey, (stamp, agg))
        if new:
            self._created(record, key, skey, start, end, agg, stamp)
        elif self._pending is None:
            self._forward(record, key, start, end, agg, stamp)
        return True

    def _created(self, record: Record, key: Any, skey: bytes, start: int, end: int,
                 agg: Any, stamp: int) -> None:
        if self._pending is not None:
            self._pending.add(end + self._grace + 1, skey)
        else:
            self._forward(record, key, start, end, agg, stamp)

    def _forward(self, record: Record, key: Any, start: int, end: int, agg: Any,
                 stamp: int) -> None:
        """Stamped with the window's largest record time (KIP-258)."""
        self._down(Record(Windowed(key, start, end), agg, stamp,
                          _copy(record.headers), record.topic, record.partition, record.offset))

    def _emit_final(self, skey: bytes) -> None:
        val = self._store.get_raw(skey)
        if val is None:
            return
        kb, start, end = decode_store_key(skey)
        self._down(Record(Windowed(self._de_key(kb, self._key_ctx), start, end), val[1], val[0],
                          None, None, self._task.partition, -1))


class SessionWindowAggregateOp(_WindowedAggregate):
    """Session windows: a record joins, extends or bridges the open sessions of its key.

    Sessions within the inactivity gap of the record are merged (aggregates combined with the
    merger) into one; the replaced sessions are deleted (tombstones downstream in update mode,
    and their pending final results cancelled). In emit="final" mode closed sessions are final
    (their result is out): never merged again. In update mode a record merges every session
    it touches that the store still holds, and is late only if the merged session ends before
    stream time - grace (Kafka Streams' rule).
    """

    def __init__(self, store_name: str, index_name: str | None, windows: Any,
                 initializer: Initializer, adder: Adder, merger: Merger,
                 late_dead_letter: bool, key_serde: Serde, value_serde: Serde) -> None:
        super().__init__(store_name, index_name, initializer, adder, windows.grace,
                         late_dead_letter, key_serde, value_serde)
        self._gap = windows.inactivity_gap
        self._merger = merger
        # A session closes once no record could extend it: end + gap + grace < stream time.
        self._close_after_end = windows.inactivity_gap + windows.grace + 1

    def process(self, record: Record) -> None:
        key = record.key
        if key is None or record.value is None:
            self.context._skip("null_key" if key is None else "null_value", record)
            return
        st = self._task.stream_time
        ts = record.timestamp
        cut = st - self._grace  # a merged session ending before this is late
        if not self._merge(record, key, ts, st, cut):
            self._late(record, st)
        if st >= self._next_check:
            self._maintain(st)

    def _merge(self, record: Record, key: Any, ts: int, st: int, cut: int) -> bool:
        """Fold the record into its session; False (nothing changed) when it is late."""
        store = self._store
        kb = store.key_bytes(key)
        gap = self._gap
        # emit="final": open sessions only; one ending before cut - gap is closed and its
        # final result out, so it never grows again. emit="update" (as Kafka Streams): every
        # session the record touches, closed or not, merges; lateness is judged on the merged
        # session's end below, so a record bridging a closed and a live session merges both.
        lowest_end = max(ts - gap, cut - gap) if self._pending is not None else ts - gap
        found = store.find_raw(kb, lowest_end, ts + gap, max(st, ts))  # type: ignore[attr-defined]
        start = end = ts
        for _, s, e, _ in found:
            start, end = min(start, s), max(end, e)
        if end < cut:
            return False
        agg = self._init()
        merger = self._merger
        for _, _, _, value in found:
            agg = merger(key, agg, value)
        pending = self._pending
        existing = None
        for skey, s, e, _ in found:
            if s == start and e == end:
                existing = skey
                continue
            store.put_raw(skey, None)
            if pending is not None:
                pending.remove(e + self._close_after_end, skey)
            else:
                self._down(Record(Windowed(key, s, e), None, e, _copy(record.headers),
                                  record.topic, record.partition, record.offset))
        agg = self._adder(key, record.value, agg)
        skey = existing or store.session_key(kb, start, end)  # type: ignore[attr-defined]
        store.put_raw(skey, agg)
        if pending is not None:
            if existing is None:
                pending.add(end + self._close_after_end, skey)
        else:
            record.key = Windowed(key, start, end)
            record.value = agg
            record.timestamp = end  # the session's largest record time (KIP-258)
            self._down(record)
        return True

    def _emit_final(self, skey: bytes) -> None:
        agg = self._store.get_raw(skey)
        if agg is None:
            return
        kb, end, start = decode_store_key(skey)
        self._down(Record(Windowed(self._de_key(kb, self._key_ctx), start, end), agg, end,
                          None, None, self._task.partition, -1))


def _copy(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None:
    return list(headers) if headers else None


def _int(value: int | None) -> int:
    return -1 if value is None else value
