"""Range, prefix and full scans over a store whose keys are encoded bytes.

Shared by the task stores (kstream.state.kv) and the global stores (kstream.state.global_store):
both keep entries ordered by key bytes, so a key range or prefix is a byte range. Subclasses
supply `_key_bytes(key) -> bytes` and `_decoded(lo, hi)`, which yields decoded (key, value)
pairs with lo <= key bytes < hi (None: unbounded), and set `_ordered_keys` when the key serde
is the ordered tuple encoding (then a prefix is a tuple of leading elements).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kstream.state.backend import prefix_end, successor
from serdes import prefix_range


class OrderedScans:
    """`range`, `prefix_scan` and `all` in key-byte order (the mixin's one job)."""

    _ordered_keys: bool

    def _key_bytes(self, key: Any) -> bytes:
        raise TypeError(f"{type(self).__name__} must define _key_bytes")

    def _decoded(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[Any, Any]]:
        raise TypeError(f"{type(self).__name__} must define _decoded")

    def range(self, from_key: Any = None, to_key: Any = None) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs with from_key <= key <= to_key in key order; None: unbounded."""
        lo = None if from_key is None else self._key_bytes(from_key)
        hi = None if to_key is None else successor(self._key_bytes(to_key))
        if lo is not None and hi is not None and lo >= hi:
            return iter(())
        return self._decoded(lo, hi)

    def prefix_scan(self, prefix: Any) -> Iterator[tuple[Any, Any]]:
        """Entries whose key starts with `prefix`, in key order.

        With the default ordered key serde `prefix` is a tuple and matches keys whose leading
        elements equal it; with other key serdes it is a key whose bytes are a byte prefix.
        """
        if self._ordered_keys:
            lo, hi = prefix_range(prefix)
            return self._decoded(lo, hi)
        lo = self._key_bytes(prefix)
        return self._decoded(lo, prefix_end(lo))

    def all(self) -> Iterator[tuple[Any, Any]]:
        """Every entry in key order."""
        return self._decoded(None, None)
