"""Backends of global stores: one sorted bytes store holding every partition of a topic.

A global store's changelog is its source topic, all partitions of it, so the checkpoint is one
offset per partition. Each write applies records and the offsets they reach in one atomic step
(one RocksDB WriteBatch across the data and offset column families), so data and checkpoint
always agree and a restart reads only what follows the checkpoint.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from rocksdict import ColumnFamily, Rdict, ReadOptions, WriteBatch

from kstream.state.backend import Entry, RestoreSink
from kstream.state.rocksdb_memory import META_CF, shared_options
from kstream.state.sorted_map import SortedBytesMap

_OFFSET = struct.Struct(">q")
_OFFSET_PREFIX = b"partition-offset-"


class GlobalBackend(Protocol):
    """Sorted bytes with one checkpointed offset per source partition."""

    path: Path | None

    def offsets(self) -> dict[int, int]:
        """partition -> offset of the last record reflected in the data."""
        ...

    def get(self, key: bytes) -> bytes | None: ...

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]: ...

    def approximate_count(self) -> int: ...

    def write(self, entries: Iterable[Entry], offsets: dict[int, int]) -> None:
        """Apply entries and the partitions' new offsets in one atomic write."""
        ...

    def begin_restore(self) -> RestoreSink: ...

    def finish_restore(self, sink: RestoreSink, partition: int, offset: int) -> None:
        """Apply one restore batch of `partition` with the offset it reached, atomically."""
        ...

    def close(self) -> None: ...


class RocksDBGlobalBackend:
    """RocksDB at `path`; offsets in the meta column family (`partition-offset-<p>`)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = path
        data_opts, meta_opts = shared_options()
        self._db: Rdict | None = Rdict(str(path), data_opts, column_families={META_CF: meta_opts})
        self._meta_cf: ColumnFamily | None = self._db.get_column_family_handle(META_CF)
        meta = self._db.get_column_family(META_CF)
        self._offsets: dict[int, int] = {}
        for key, raw in meta.items():
            if isinstance(key, bytes) and key.startswith(_OFFSET_PREFIX):
                self._offsets[int(key[len(_OFFSET_PREFIX):])] = _OFFSET.unpack(raw)[0]
        del meta  # a live column-family object keeps the database locked after close

    def _open(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"global store at {self.path} is closed")
        return self._db

    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def get(self, key: bytes) -> bytes | None:
        return self._open().get(key)

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        opts = ReadOptions()
        if hi is not None:
            opts.set_iterate_upper_bound(hi)
        return iter(self._open().items(from_key=lo, read_opt=opts))  # type: ignore[arg-type]

    def approximate_count(self) -> int:
        return self._open().property_int_value("rocksdb.estimate-num-keys") or 0

    def write(self, entries: Iterable[Entry], offsets: dict[int, int]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        for partition, offset in offsets.items():
            batch.put(_OFFSET_PREFIX + str(partition).encode(), _OFFSET.pack(offset),
                      self._meta_cf)
        if batch.is_empty():
            return
        self._open().write(batch)
        self._offsets.update(offsets)

    def begin_restore(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def finish_restore(self, sink: object, partition: int, offset: int) -> None:
        assert isinstance(sink, WriteBatch)
        sink.put(_OFFSET_PREFIX + str(partition).encode(), _OFFSET.pack(offset), self._meta_cf)
        self._open().write(sink)
        self._offsets[partition] = offset

    def close(self) -> None:
        db = self._db
        if db is None:
            return
        self._meta_cf = None
        self._db = None
        db.close()


class _MemorySink:
    """Restore writes go straight into the map (nothing on disk to keep consistent)."""

    __slots__ = ("put", "delete")

    def __init__(self, data: SortedBytesMap[bytes]) -> None:
        self.put = data.set
        self.delete = data.pop


class MemoryGlobalBackend:
    """In memory: rebuilt from the whole topic on every start."""

    path: Path | None = None

    def __init__(self) -> None:
        self._data: SortedBytesMap[bytes] = SortedBytesMap()
        self._offsets: dict[int, int] = {}

    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        data = self._data
        for key in data.range_keys(lo, hi):
            value = data.get(key)
            if value is not None:
                yield key, value

    def approximate_count(self) -> int:
        return len(self._data)

    def write(self, entries: Iterable[Entry], offsets: dict[int, int]) -> None:
        data = self._data
        for key, value in entries:
            if value is None:
                data.pop(key)
            else:
                data.set(key, bytes(memoryview(value)))
        self._offsets.update(offsets)

    def begin_restore(self) -> _MemorySink:
        return _MemorySink(self._data)

    def finish_restore(self, sink: object, partition: int, offset: int) -> None:
        self._offsets[partition] = offset

    def close(self) -> None:
        self._data.clear()
        self._offsets.clear()
