"""Session stores: one aggregate per (key, session), found by key and end time.

Same layout and layers as window stores (see window_store), with the times swapped: the key
ends in (end, start) and segments follow the session end, so "sessions of this key ending at
or after T" is a short scan, and sessions expire by their end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kstream._serde_defaults import DefaultSerde
from kstream.state.builder import BackendName
from kstream.state.window_store import SegmentedStore, SegmentedStoreBuilder, segment_interval
from serdes import JsonSerde, Windowed, resolve


class SessionStore(SegmentedStore):
    """Sessions `Windowed(key, start, end)` (both bounds inclusive) and their aggregates."""

    def __repr__(self) -> str:
        return f"SessionStore({self.name!r}, partition={self.partition})"

    def session_key(self, kb: bytes, start: int, end: int) -> bytes:
        return self.store_key(kb, end, start)

    def get(self, key: Any, start: int, end: int) -> Any:
        return self._get(self.session_key(self.key_bytes(key), start, end))

    def put(self, key: Any, start: int, end: int, value: Any) -> None:
        self._put(self.session_key(self.key_bytes(key), start, end), value)

    def remove(self, key: Any, start: int, end: int) -> None:
        self.put(key, start, end, None)

    def find_raw(self, kb: bytes, earliest_end: int, latest_start: int, latest_end: int
                 ) -> list[tuple[bytes, int, int, Any]]:
        """(store key, start, end, value) of sessions with earliest_end <= end <= latest_end
        and start <= latest_start, by end."""
        return [(skey, start, end, value)
                for skey, end, start, value in self._scan_key(kb, earliest_end, latest_end)
                if start <= latest_start]

    def find_sessions(self, key: Any, earliest_end: int, latest_start: int,
                      latest_end: int) -> list[tuple[Windowed, Any]]:
        return [(Windowed(key, start, end), value) for _, start, end, value
                in self.find_raw(self.key_bytes(key), earliest_end, latest_start, latest_end)]

    def fetch(self, key: Any) -> list[tuple[Windowed, Any]]:
        """Every session of `key`, by start (scans the store: for queries, not hot paths)."""
        return sorted(((w, v) for w, v in self.all() if w.key == key), key=lambda e: e[0].start)

    def all(self) -> Iterator[tuple[Windowed, Any]]:
        for key, end, start, value in self._all():
            yield Windowed(key, start, end), value


class SessionStoreBuilder(SegmentedStoreBuilder):
    store_class = SessionStore


def session_store(name: str, *, retention_ms: int, key_serde: Any = None,
                  value_serde: Any = None, backend: BackendName = "rocksdb",
                  logging: bool = True, segment_ms: int | None = None,
                  changelog_config: dict[str, str] | None = None) -> SessionStoreBuilder:
    """A session store builder; sessions ending before stream time - retention expire."""
    if retention_ms <= 0:
        raise ValueError(f"store {name!r}: retention_ms must be positive, got {retention_ms}")
    return SessionStoreBuilder(
        name, DefaultSerde("key", JsonSerde(), f"store {name!r}") if key_serde is None
        else resolve(key_serde),
        DefaultSerde("value", JsonSerde(), f"store {name!r}") if value_serde is None
        else resolve(value_serde), backend, logging,
        retention_ms, segment_ms or segment_interval(retention_ms),
        {str(k): str(v) for k, v in (changelog_config or {}).items()})
