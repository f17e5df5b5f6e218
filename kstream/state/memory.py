"""The memory backend: a sorted map and an offset; rebuilt from the changelog on every start."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from kstream.state.backend import Entry
from kstream.state.sorted_map import SortedBytesMap


class _MemorySink:
    """Restore writes go straight into the map: there is nothing on disk to keep consistent."""

    __slots__ = ("put", "delete")

    def __init__(self, data: SortedBytesMap[bytes]) -> None:
        self.put = data.set
        self.delete = data.pop


class SortedMemoryData:
    """A sorted in-memory bytes map: what a task store's and a global store's memory backends
    share (they differ in how many offsets they keep). Its durability is the changelog."""

    path: Path | None = None

    def __init__(self) -> None:
        self._data: SortedBytesMap[bytes] = SortedBytesMap()

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        data = self._data
        for key in data.range_keys(lo, hi):
            value = data.get(key)
            if value is not None:  # removed while the caller was iterating
                yield key, value

    def approximate_count(self) -> int:
        return len(self._data)

    def _apply(self, entries: Iterable[Entry]) -> None:
        data = self._data
        for key, value in entries:
            if value is None:
                data.pop(key)
            else:
                # A copy: some encoders return bytes that pin a much larger buffer (orjson
                # keeps ~4 KB per value), and this backend keeps every value it is given.
                data.set(key, bytes(memoryview(value)))

    def begin_restore(self) -> _MemorySink:
        return _MemorySink(self._data)

    def close(self) -> None:
        self._data.clear()


class MemoryBackend(SortedMemoryData):
    """A task store's memory backend: the map and one changelog offset."""

    def __init__(self) -> None:
        super().__init__()
        self._offset: int | None = None

    @property
    def committed_offset(self) -> int | None:
        return self._offset

    def copy_items(self) -> dict[bytes, bytes]:
        """Every entry, copied in one C-level step: safe from another thread while the owning
        one writes (the GIL holds for the copy; `range` is not, it settles the sorted index).
        Interactive queries scan memory stores this way (kstream.queries)."""
        return dict(self._data.items())

    def write(self, entries: Iterable[Entry], offset: int | None) -> None:
        self._apply(entries)
        if offset is not None:
            self._offset = offset

    def finish_restore(self, sink: object, offset: int) -> None:
        self._offset = offset

    def close(self) -> None:
        super().close()
        self._offset = None
