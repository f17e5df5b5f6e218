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

from rocksdict import WriteBatch

from kstream.state.backend import Entry, RestoreSink
from kstream.state.memory import SortedMemoryData
from kstream.state.rocksdb import RocksDBData

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


class RocksDBGlobalBackend(RocksDBData):
    """RocksDB at `path`; offsets in the meta column family (`partition-offset-<p>`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        assert self._meta is not None
        self._offsets: dict[int, int] = {}
        for key, raw in self._meta.items():
            if isinstance(key, bytes) and key.startswith(_OFFSET_PREFIX):
                self._offsets[int(key[len(_OFFSET_PREFIX):])] = _OFFSET.unpack(raw)[0]

    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def write(self, entries: Iterable[Entry], offsets: dict[int, int]) -> None:
        batch = self._batch(entries)
        for partition, offset in offsets.items():
            batch.put(_OFFSET_PREFIX + str(partition).encode(), _OFFSET.pack(offset),
                      self._meta_cf)
        if batch.is_empty():
            return
        self._open().write(batch)
        self._offsets.update(offsets)

    def finish_restore(self, sink: object, partition: int, offset: int) -> None:
        assert isinstance(sink, WriteBatch)
        sink.put(_OFFSET_PREFIX + str(partition).encode(), _OFFSET.pack(offset), self._meta_cf)
        self._open().write(sink)
        self._offsets[partition] = offset


class MemoryGlobalBackend(SortedMemoryData):
    """In memory: rebuilt from the whole topic on every start."""

    def __init__(self) -> None:
        super().__init__()
        self._offsets: dict[int, int] = {}

    def offsets(self) -> dict[int, int]:
        return dict(self._offsets)

    def write(self, entries: Iterable[Entry], offsets: dict[int, int]) -> None:
        self._apply(entries)
        self._offsets.update(offsets)

    def finish_restore(self, sink: object, partition: int, offset: int) -> None:
        self._offsets[partition] = offset

    def close(self) -> None:
        super().close()
        self._offsets.clear()
