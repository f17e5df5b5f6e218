"""Window stores: windowed aggregates in a key-value store with a time-segmented key layout.

Built on the key-value layers (KeyValueStore -> WriteBuffer -> change-logging -> RocksDB or
memory), so windows get the same buffering, changelog and restore as any store; the store
object exposes what `restore_stores` and the Task use (backend, changelog_topic, commit hooks).

Key layout, chosen so both hot operations are range scans::

    segment (8) | len(inner key) (4) | inner key bytes | t1 (8) | t2 (8)     (big-endian)

`segment = t1 // segment_ms`. Within a segment the windows of one key are contiguous and in
t1 order, so `fetch(key, from, to)` is one short scan per segment; whole segments older than
the retention are one scan from the start of the store, deleted through the write buffer so
the changelog gets a tombstone for each window. Window stores use t1 = start, t2 = end; session
stores (see session_store) use t1 = end, t2 = start. Times are offset by 2**63 so negative
times sort correctly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kstream._serde_defaults import DefaultSerde
from kstream.state.backend import Backend
from kstream.state.builder import BackendName, kv_store
from kstream.state.changelog import ChangelogCollector
from kstream.state.kv import KeyValueStore, TimestampedKeyValueStore
from serdes import BytesSerde, JsonSerde, Serde, SerdeContext, Windowed, resolve

OFFSET = 1 << 63
_HEAD = struct.Struct(">QI")
_SEG = struct.Struct(">Q")
_TIMES = struct.Struct(">QQ")
_TIME = struct.Struct(">Q")
_MAX_SCANNED_SEGMENTS = 64  # wider fetches scan the whole store once instead


def _head(segment: int, kb: bytes) -> bytes:
    return _HEAD.pack(segment + OFFSET, len(kb)) + kb


def decode_store_key(data: bytes) -> tuple[bytes, int, int]:
    """(inner key bytes, t1, t2) of a store key."""
    _, n = _HEAD.unpack_from(data, 0)
    t1, t2 = _TIMES.unpack_from(data, 12 + n)
    return data[12:12 + n], t1 - OFFSET, t2 - OFFSET


class SegmentedStore:
    """Common part of window and session stores: layout, expiry, commit hooks, restore view."""

    def __init__(self, kv: KeyValueStore, key_serde: Serde, retention_ms: int,
                 segment_ms: int) -> None:
        self.kv = kv
        self.retention_ms = retention_ms
        self.segment_ms = segment_ms
        self._ctx = SerdeContext(topic=kv.changelog_topic, partition=kv.partition, is_key=True)
        self._ser_key, self._de_key = key_serde.serialize, key_serde.deserialize
        self._get, self._put = kv.get, kv.put
        self._expired_below: int | None = None  # segments below this are known to be gone

    # -- what restore_stores and the Task use -------------------------------------------------
    @property
    def name(self) -> str:
        return self.kv.name

    @property
    def changelog_topic(self) -> str:
        return self.kv.changelog_topic

    @property
    def partition(self) -> int:
        return self.kv.partition

    @property
    def logging(self) -> bool:
        return self.kv.logging

    @property
    def task_dir(self) -> Path:
        return self.kv.task_dir

    @property
    def backend(self) -> Backend:
        return self.kv.backend

    def prepare_commit(self, collector: ChangelogCollector) -> None:
        self.kv.prepare_commit(collector)

    def after_commit(self) -> None:
        self.kv.after_commit()

    def discard_uncommitted(self) -> None:
        self.kv.discard_uncommitted()
        self._expired_below = None

    def close(self) -> None:
        self.kv.close()

    def approximate_count(self) -> int:
        return self.kv.approximate_count()

    # -- keys ----------------------------------------------------------------------------------
    def key_bytes(self, key: Any) -> bytes:
        if key is None:
            raise ValueError(f"store {self.name!r}: keys must not be None")
        kb = self._ser_key(key, self._ctx)
        if kb is None:
            raise ValueError(f"store {self.name!r}: key serde returned None for {key!r}")
        return kb

    def store_key(self, kb: bytes, t1: int, t2: int) -> bytes:
        return (_HEAD.pack(t1 // self.segment_ms + OFFSET, len(kb)) + kb
                + _TIMES.pack(t1 + OFFSET, t2 + OFFSET))

    def get_raw(self, skey: bytes) -> Any:
        return self._get(skey)

    def put_raw(self, skey: bytes, value: Any) -> None:
        """value None deletes (a tombstone in the changelog)."""
        self._put(skey, value)

    @property
    def timestamped(self) -> bool:
        """Entries keep their largest record time (a time-window aggregation's store)."""
        return isinstance(self.kv, TimestampedKeyValueStore)

    def get_raw_with_timestamp(self, skey: bytes) -> tuple[Any, int] | None:
        """(value, timestamp) of a timestamped store's entry, or None."""
        return self._timestamped_kv().get_with_timestamp(skey)

    def put_raw_with_timestamp(self, skey: bytes, value: Any, timestamp: int) -> None:
        self._timestamped_kv().put_with_timestamp(skey, value, timestamp)

    def _timestamped_kv(self) -> TimestampedKeyValueStore:
        kv = self.kv
        if not isinstance(kv, TimestampedKeyValueStore):
            raise TypeError(f"store {self.name!r} keeps no timestamps (build it with "
                            "timestamped=True)")
        return kv

    def append_raw(self, skey: bytes, value: Any) -> None:
        """Write an entry that is never read back by its key (a join buffer's record)."""
        self.kv.put_uncached(skey, value)

    # -- scans ---------------------------------------------------------------------------------
    def _scan_key(self, kb: bytes, t1_from: int, t1_to: int
                  ) -> Iterator[tuple[bytes, int, int, Any]]:
        """(store key, t1, t2, value) of one key with t1 in [t1_from, t1_to], in t1 order."""
        seg_ms = self.segment_ms
        first, last = t1_from // seg_ms, t1_to // seg_ms
        if first > last:
            return
        if last - first > _MAX_SCANNED_SEGMENTS:
            for skey, value in self.kv.all():
                k, t1, t2 = decode_store_key(skey)
                if k == kb and t1_from <= t1 <= t1_to:
                    yield skey, t1, t2, value
            return
        # Exclusive upper bound: every key with t1 <= t1_to, whatever follows t1.
        lo_t, hi_t = _TIME.pack(t1_from + OFFSET), _TIME.pack(t1_to + 1 + OFFSET)
        offset = 12 + len(kb)
        unpack = _TIMES.unpack_from
        scan = self.kv.range_bytes
        for segment in range(first, last + 1):
            head = _head(segment, kb)
            for skey, value in scan(head + lo_t, head + hi_t):
                t1, t2 = unpack(skey, offset)
                yield skey, t1 - OFFSET, t2 - OFFSET, value

    def _all(self) -> Iterator[tuple[Any, int, int, Any]]:
        de, ctx = self._de_key, self._ctx
        for skey, value in self.kv.all():
            kb, t1, t2 = decode_store_key(skey)
            yield de(kb, ctx), t1, t2, value

    # -- expiry --------------------------------------------------------------------------------
    def expire(self, stream_time: int) -> int:
        """Delete every segment older than `stream_time - retention`; returns windows deleted.

        Deletes go through the write buffer, so the changelog gets tombstones at the next
        commit and a restore never brings expired windows back.
        """
        cutoff = (stream_time - self.retention_ms) // self.segment_ms
        below = self._expired_below
        if below is not None and cutoff <= below:
            return 0
        lo = None if below is None else _SEG.pack(below + OFFSET)
        doomed = [skey for skey, _ in self.kv.range(lo, _SEG.pack(cutoff + OFFSET))]
        put = self._put
        for skey in doomed:
            put(skey, None)
        self._expired_below = cutoff
        return len(doomed)

    def next_expiry(self, stream_time: int) -> int:
        """The stream time at which `expire` will next have a segment to drop."""
        cutoff = (stream_time - self.retention_ms) // self.segment_ms
        return (cutoff + 1) * self.segment_ms + self.retention_ms


class WindowStore(SegmentedStore):
    """Aggregates per (key, window): `get`/`put` by window, `fetch` by key and start range."""

    def __repr__(self) -> str:
        return f"WindowStore({self.name!r}, partition={self.partition})"

    def get(self, key: Any, start: int, end: int) -> Any:
        return self._get(self.store_key(self.key_bytes(key), start, end))

    def put(self, key: Any, start: int, end: int, value: Any) -> None:
        self._put(self.store_key(self.key_bytes(key), start, end), value)

    def delete(self, key: Any, start: int, end: int) -> None:
        self.put(key, start, end, None)

    def fetch(self, key: Any, time_from: int, time_to: int) -> Iterator[tuple[Windowed, Any]]:
        """Windows of `key` whose start is in [time_from, time_to], in start order."""
        for _, start, end, value in self._scan_key(self.key_bytes(key), time_from, time_to):
            yield Windowed(key, start, end), value

    def fetch_raw(self, kb: bytes, time_from: int, time_to: int
                  ) -> Iterator[tuple[bytes, int, int, Any]]:
        """(store key, start, end, value) by inner key bytes: the operators' scan."""
        return self._scan_key(kb, time_from, time_to)

    def fetch_starts(self, kb: bytes, time_from: int, time_to: int
                     ) -> list[tuple[bytes, int, Any]]:
        """(store key, start, value) by inner key bytes with start in [time_from, time_to],
        as a list: the join's per-record scan, without generator layers."""
        seg_ms = self.segment_ms
        first, last = time_from // seg_ms, time_to // seg_ms
        if last - first > _MAX_SCANNED_SEGMENTS:
            return [(skey, t1, value) for skey, t1, _, value
                    in self._scan_key(kb, time_from, time_to)]
        lo_t, hi_t = _TIME.pack(time_from + OFFSET), _TIME.pack(time_to + 1 + OFFSET)
        at = 12 + len(kb)
        unpack, scan = _TIME.unpack_from, self.kv.range_bytes
        out = []
        for segment in range(first, last + 1):
            head = _head(segment, kb)
            out += [(skey, unpack(skey, at)[0] - OFFSET, value)
                    for skey, value in scan(head + lo_t, head + hi_t)]
        return out

    def all(self) -> Iterator[tuple[Windowed, Any]]:
        for key, start, end, value in self._all():
            yield Windowed(key, start, end), value


class TimestampedSerde:
    """Value serde for (max record timestamp, aggregate) pairs: 8 bytes then the aggregate."""

    __slots__ = ("inner",)

    def __init__(self, inner: Serde) -> None:
        self.inner = inner

    def serialize(self, obj: tuple[int, Any] | None, ctx: SerdeContext | None = None
                  ) -> bytes | None:
        if obj is None:
            return None
        data = self.inner.serialize(obj[1], ctx)
        return _TIME.pack(obj[0] + OFFSET) + (data or b"")

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None
                    ) -> tuple[int, Any] | None:
        if data is None:
            return None
        return _TIME.unpack_from(data)[0] - OFFSET, self.inner.deserialize(data[8:], ctx)


class SegmentedStoreBuilder:
    """Describes a window or session store; `build` makes one task's instance."""

    store_class: type[SegmentedStore] = WindowStore

    def __init__(self, name: str, key_serde: Serde, value_serde: Serde, backend: BackendName,
                 logging: bool, retention_ms: int, segment_ms: int,
                 changelog_config: dict[str, str]) -> None:
        self._kv = kv_store(name, key_serde=BytesSerde(), value_serde=value_serde,
                            backend=backend, logging=logging, changelog_config=changelog_config)
        self.name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.backend = backend
        self.logging = logging
        self.retention_ms = retention_ms
        self.segment_ms = segment_ms

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, backend={self.backend!r}, "
                f"retention_ms={self.retention_ms}, logging={self.logging})")

    @property
    def timestamped(self) -> bool:
        """Entries keep their largest record time (set by time-window aggregations)."""
        return self._kv.timestamped

    @timestamped.setter
    def timestamped(self, value: bool) -> None:
        self._kv.timestamped = value

    def changelog_topic(self, application_id: str) -> str:
        return self._kv.changelog_topic(application_id)

    def changelog_topic_config(self) -> dict[str, str]:
        """Compacted: expiry writes tombstones, so compaction alone keeps it bounded."""
        return self._kv.changelog_topic_config()

    def build(self, task_dir: Path, partition: int, changelog_topic: str) -> SegmentedStore:
        kv = self._kv.build(task_dir, partition, changelog_topic)
        return self.store_class(kv, self.key_serde, self.retention_ms, self.segment_ms)


class WindowStoreBuilder(SegmentedStoreBuilder):
    store_class = WindowStore


def segment_interval(retention_ms: int) -> int:
    """Half the retention (at least 1 ms): at most ~3 segments live, expiry drops whole ones."""
    return max(retention_ms // 2, 1)


def window_store(name: str, *, retention_ms: int, key_serde: Any = None,
                 value_serde: Any = None, backend: BackendName = "rocksdb",
                 logging: bool = True, segment_ms: int | None = None,
                 changelog_config: dict[str, str] | None = None) -> WindowStoreBuilder:
    """A window store builder; windows older than `retention_ms` of stream time are expired."""
    if retention_ms <= 0:
        raise ValueError(f"store {name!r}: retention_ms must be positive, got {retention_ms}")
    return WindowStoreBuilder(
        name, DefaultSerde("key", JsonSerde(), f"store {name!r}") if key_serde is None
        else resolve(key_serde),
        DefaultSerde("value", JsonSerde(), f"store {name!r}") if value_serde is None
        else resolve(value_serde), backend, logging,
        retention_ms, segment_ms or segment_interval(retention_ms),
        {str(k): str(v) for k, v in (changelog_config or {}).items()})
