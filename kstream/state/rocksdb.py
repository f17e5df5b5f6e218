"""The RocksDB backend: one database per store per task, data and offset in one write batch.

The changelog offset lives in its own column family, so scans of the data never see it and a
WriteBatch spanning both column families keeps them in step (the WAL makes it atomic).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from rocksdict import ColumnFamily, Rdict, ReadOptions, WriteBatch

from kstream.state.backend import Entry
from kstream.state.rocksdb_memory import META_CF, shared_options

_OFFSET_KEY = b"changelog-offset"
_LAYOUT_KEY = b"entry-layout"
PLAIN_LAYOUT = b"plain"
TIMESTAMPED_LAYOUT = b"timestamped"  # kstream.state.kv.TimestampedKeyValueStore's entries
_OFFSET = struct.Struct(">q")


class RocksDBData:
    """Sorted on-disk bytes at `path`, sharing the process-wide memory budget, with a meta
    column family for checkpoints; what a task store's and a global store's RocksDB backends
    share (they differ in how many offsets they checkpoint)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path: Path | None = path
        data_opts, meta_opts = shared_options()
        self._db: Rdict | None = Rdict(str(path), data_opts, column_families={META_CF: meta_opts})
        self._meta: Rdict | None = self._db.get_column_family(META_CF)
        self._meta_cf: ColumnFamily | None = self._db.get_column_family_handle(META_CF)

    def _open(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"RocksDB store at {self.path} is closed")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        return self._open().get(key)

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        # Seek to lo; bound only above. (rocksdict 0.3 yields nothing when a lower bound is set
        # without an upper one, and the seek makes a lower bound unnecessary anyway.)
        opts = ReadOptions()
        if hi is not None:
            opts.set_iterate_upper_bound(hi)
        return iter(self._open().items(from_key=lo, read_opt=opts))  # type: ignore[arg-type]

    def approximate_count(self) -> int:
        return self._open().property_int_value("rocksdb.estimate-num-keys") or 0

    @staticmethod
    def _batch(entries: Iterable[Entry]) -> WriteBatch:
        """The entries as one write batch (value None deletes); offsets are added to it."""
        batch = WriteBatch(raw_mode=True)
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        return batch

    def begin_restore(self) -> WriteBatch:
        return WriteBatch(raw_mode=True)

    def close(self) -> None:
        """Release every handle first: a live column-family handle keeps the DB locked."""
        db = self._db
        if db is None:
            return
        self._meta = None
        self._meta_cf = None
        self._db = None
        db.close()


class RocksDBBackend(RocksDBData):
    """A task store's backend: one changelog offset, written in the data's batch."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        assert self._meta is not None
        raw = self._meta.get(_OFFSET_KEY)
        self._offset: int | None = None if raw is None else _OFFSET.unpack(raw)[0]

    @property
    def committed_offset(self) -> int | None:
        return self._offset

    def write(self, entries: Iterable[Entry], offset: int | None) -> None:
        self._commit(self._batch(entries), offset)

    def layout(self, default: bytes) -> bytes:
        """How the entries are laid out (see KeyValueStoreBuilder._rocksdb); databases
        written before the layout was recorded have none: `default`."""
        assert self._meta is not None
        found = self._meta.get(_LAYOUT_KEY)
        return default if found is None else bytes(found)

    def set_layout(self, layout: bytes) -> None:
        assert self._meta is not None
        self._meta[_LAYOUT_KEY] = layout

    def finish_restore(self, sink: object, offset: int) -> None:
        assert isinstance(sink, WriteBatch)
        self._commit(sink, offset)

    def _commit(self, batch: WriteBatch, offset: int | None) -> None:
        if offset is not None:
            batch.put(_OFFSET_KEY, _OFFSET.pack(offset), self._meta_cf)
        if batch.is_empty():
            return
        self._open().write(batch)
        if offset is not None:
            self._offset = offset
