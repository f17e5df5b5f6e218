"""What a storage backend offers the layers above it: bytes in, bytes out, in key order.

Writes arrive in whole batches together with the changelog offset they correspond to, and a
backend applies each batch atomically, so its data and offset always agree.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

Entry = tuple[bytes, bytes | None]
"""A key and its new value; None deletes the key."""

TIMESTAMP_PREFIX = struct.Struct(">q")
"""A timestamped store's local entry is `i64 timestamp (big-endian) | value bytes`
(kstream.state.kv.TimestampedKeyValueStore); its changelog record holds the value bytes alone,
stamped with that timestamp. The store writes it, the change-logging layer splits it, the
restore rebuilds it."""

NO_TIMESTAMP = -1
"""The timestamp of an entry written without one: its changelog record is stamped with the
commit's time, as a plain store's are."""


class RestoreSink(Protocol):
    """Collects changelog records during restore; see `Backend.finish_restore`."""

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class Backend(Protocol):
    """A sorted bytes store with a committed changelog offset."""

    path: Path | None
    """Where the data lives on disk (None: memory only)."""

    @property
    def committed_offset(self) -> int | None:
        """Changelog offset of the last record reflected in the data, None if unknown."""
        ...

    def get(self, key: bytes) -> bytes | None: ...

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Entries with lo <= key < hi in byte order; None means unbounded."""
        ...

    def approximate_count(self) -> int: ...

    def write(self, entries: Iterable[Entry], offset: int | None) -> None:
        """Apply all entries and (unless None) the new offset in one atomic write."""
        ...

    def begin_restore(self) -> RestoreSink: ...

    def finish_restore(self, sink: RestoreSink, offset: int) -> None:
        """Apply what the sink collected together with the changelog offset it reached."""
        ...

    def close(self) -> None: ...


def successor(key: bytes) -> bytes:
    """The smallest byte string greater than `key`: turns an inclusive bound exclusive."""
    return key + b"\x00"


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
