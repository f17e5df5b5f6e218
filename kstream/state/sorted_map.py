"""A dict whose keys can also be walked in byte order, for range scans over memory.

Keys inserted or removed since the last scan are kept aside and merged into the sorted key list
only when a scan needs it, so bulk loads (restore) cost one sort, not one list insert per key.
A map that was never scanned keeps no order at all: most stores (aggregations) are only read
by key, and their writes then cost a dict write, not also a set insert.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import ItemsView
from typing import Generic, TypeVar

V = TypeVar("V")

_FEW = 32  # below this many pending changes, patch the list in place instead of re-sorting


class SortedBytesMap(Generic[V]):
    """Mapping bytes -> V with `range_keys(lo, hi)` in byte order (lo inclusive, hi exclusive)."""

    __slots__ = ("_data", "_keys", "_added", "_removed", "_ordered", "writes")

    def __init__(self) -> None:
        self.writes = 0  # set/pop calls so far, never reset: "was anything written since?"
        self._data: dict[bytes, V] = {}
        # Invariant: while _ordered, _keys + _added - _removed == the keys of _data, _keys
        # sorted (_settle makes them equal); before the first scan none of the three is kept.
        self._ordered = False
        self._keys: list[bytes] = []       # sorted; may lag behind _data, see _settle
        self._added: set[bytes] = set()    # in _data, not yet in _keys
        self._removed: set[bytes] = set()  # in _keys, no longer in _data

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: bytes) -> bool:
        return key in self._data

    def get(self, key: bytes, default: V | None = None) -> V | None:
        return self._data.get(key, default)

    def items(self) -> ItemsView[bytes, V]:
        """All entries in insertion order (not sorted)."""
        return self._data.items()

    def set(self, key: bytes, value: V) -> None:
        self.writes += 1
        data = self._data
        if not self._ordered:
            data[key] = value
            return
        if key not in data:
            if key in self._removed:
                self._removed.discard(key)
            else:
                self._added.add(key)
        data[key] = value

    def pop(self, key: bytes) -> None:
        self.writes += 1
        data = self._data
        if not self._ordered:
            data.pop(key, None)
            return
        if key in data:
            del data[key]
            if key in self._added:
                self._added.discard(key)
            else:
                self._removed.add(key)

    def clear(self) -> None:
        self._data.clear()
        self._keys.clear()
        self._added.clear()
        self._removed.clear()

    def range_keys(self, lo: bytes | None, hi: bytes | None) -> list[bytes]:
        """A snapshot of the keys in [lo, hi) in byte order; None means unbounded."""
        self._settle()
        keys = self._keys
        i = 0 if lo is None else bisect_left(keys, lo)
        j = len(keys) if hi is None else bisect_left(keys, hi)
        return keys[i:j]

    def _settle(self) -> None:
        if not self._ordered:
            self._ordered = True
            self._keys = sorted(self._data)
            return
        keys = self._keys
        if self._removed:
            if len(self._removed) <= _FEW:
                for key in self._removed:
                    del keys[bisect_left(keys, key)]
            else:
                data = self._data
                self._keys = keys = [k for k in keys if k in data]
            self._removed.clear()
        if self._added:
            if len(self._added) <= _FEW:
                for key in self._added:
                    insort(keys, key)
            else:
                keys.extend(sorted(self._added))
                keys.sort()  # two sorted runs: timsort merges them in linear time
            self._added.clear()
