"""The write buffer: a task's uncommitted writes, which also serve its reads.

Nothing reaches the backend until Kafka accepted the commit (DESIGN: "Never let uncommitted
writes reach the local store"). Reads and scans see the buffer merged over the backend, with
buffered deletes (tombstones) hiding backend keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from kstream.state.backend import Entry
from kstream.state.changelog import ChangelogCollector
from kstream.state.sorted_map import SortedBytesMap

_MISSING = object()


class CommitLayer(Protocol):
    """What sits under the buffer: reads, plus the two commit steps (ChangeloggingLayer)."""

    def get(self, key: bytes) -> bytes | None: ...
    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]: ...
    def approximate_count(self) -> int: ...
    def send(self, entries: list[Entry], collector: ChangelogCollector) -> None: ...
    def apply(self, entries: list[Entry]) -> None: ...
    def discard(self) -> None: ...


class WriteBuffer:
    """Buffers puts/deletes (latest value per key) until `after_commit`."""

    def __init__(self, inner: CommitLayer, logged: bool) -> None:
        self.inner = inner
        self._logged = logged
        self._buf: SortedBytesMap[bytes | None] = SortedBytesMap()
        self._sent_version: int | None = None  # _buf.writes when they reached the changelog
        # put(key, value): value None buffers a delete, which hides the key in the backend
        # until committed. The map's own set (one Python call per store write, not two); the
        # map counts writes, which after_commit compares with _sent_version.
        self.put: Callable[[bytes, bytes | None], None] = self._buf.set

    def __len__(self) -> int:
        return len(self._buf)

    def get(self, key: bytes) -> bytes | None:
        value = self._buf.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            return self.inner.get(key)
        return value

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with lo <= key < hi in byte order, buffer merged over the backend."""
        buf = self._buf
        keys = buf.range_keys(lo, hi) if len(buf) else []
        if not keys:
            return self.inner.range(lo, hi)
        return _merge([(k, buf.get(k)) for k in keys], self.inner.range(lo, hi))

    def approximate_count(self) -> int:
        """Backend count adjusted by buffered inserts and deletes (one backend get each)."""
        count = self.inner.approximate_count()
        get = self.inner.get
        for key, value in self._buf.items():
            present = get(key) is not None
            if value is None and present:
                count -= 1
            elif value is not None and not present:
                count += 1
        return max(count, 0)

    # -- commit steps ----------------------------------------------------------------------------
    def prepare_commit(self, collector: ChangelogCollector) -> None:
        """Step 3: send the latest value of every buffered key to the changelog."""
        if self._buf:
            self.inner.send(list(self._buf.items()), collector)
        self._sent_version = self._buf.writes

    def after_commit(self) -> None:
        """Step 6: apply the buffer to the backend (one atomic write with the offset), clear it.

        A logged store applies only what reached the changelog: writes buffered since then wait
        for the next commit, as they are not yet durable anywhere.
        """
        if self._logged and self._sent_version != self._buf.writes:
            if self._sent_version is not None:
                raise RuntimeError("store written between prepare_commit and after_commit")
            if self._buf:
                return
        self._sent_version = None
        try:
            self.inner.apply(list(self._buf.items()))
        finally:
            self._buf.clear()  # on failure the changelog (or the replayed input) has the truth

    def discard(self) -> None:
        """The commit failed: forget every buffered write."""
        self._buf.clear()
        self._sent_version = None
        self.inner.discard()


def _merge(buffered: list[tuple[bytes, bytes | None]],
           backend: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """Merge two sorted streams; the buffer wins on equal keys, its None values are dropped."""
    it = iter(buffered)
    nxt = next(it, None)
    for key, value in backend:
        while nxt is not None and nxt[0] < key:
            if nxt[1] is not None:
                yield nxt  # type: ignore[misc]
            nxt = next(it, None)
        if nxt is not None and nxt[0] == key:
            if nxt[1] is not None:
                yield nxt  # type: ignore[misc]
            nxt = next(it, None)
            continue
        yield key, value
    while nxt is not None:
        if nxt[1] is not None:
            yield nxt  # type: ignore[misc]
        nxt = next(it, None)
