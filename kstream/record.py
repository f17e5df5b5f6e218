"""The record that flows through a topology."""

from __future__ import annotations

from typing import Any

Headers = list[tuple[str, bytes]]


class Record:
    """One key/value event with its event time, headers and origin.

    Records are mutable and passed down a processor chain in place (one allocation per input
    record is the budget); a node that fans out hands each extra child a copy. A processor that
    keeps a record beyond `process` must keep a `copy()`.
    """

    __slots__ = ("key", "value", "timestamp", "headers", "topic", "partition", "offset")

    def __init__(self, key: Any, value: Any, timestamp: int = 0, headers: Headers | None = None,
                 topic: str | None = None, partition: int = -1, offset: int = -1) -> None:
        self.key = key
        self.value = value
        self.timestamp = timestamp
        self.headers = headers
        self.topic = topic
        self.partition = partition
        self.offset = offset

    def copy(self) -> Record:
        """A shallow copy (the header list copied, key and value shared): what a processor
        keeps beyond `process`, or forwards when it also changes the original."""
        # An empty list is copied too: appending to the copy's headers must not reach the original.
        headers = None if self.headers is None else list(self.headers)
        return Record(self.key, self.value, self.timestamp, headers, self.topic, self.partition,
                      self.offset)

    def with_value(self, value: Any) -> Record:
        """A copy carrying `value` (timestamp, headers and origin kept)."""
        rec = self.copy()
        rec.value = value
        return rec

    def with_key(self, key: Any) -> Record:
        """A copy carrying `key` (timestamp, headers and origin kept)."""
        rec = self.copy()
        rec.key = key
        return rec

    def __repr__(self) -> str:
        return (f"Record(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp}, "
                f"topic={self.topic!r}, partition={self.partition}, offset={self.offset})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)
