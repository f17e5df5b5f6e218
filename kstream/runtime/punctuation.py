"""Scheduled callbacks (punctuators) of one task, on stream time or wall-clock time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kstream.processor import PunctuationType


@dataclass
class Punctuator:
    interval_ms: int
    kind: PunctuationType
    callback: Callable[[int], None]
    next_ms: int
    cancelled: bool = False

    def cancel(self) -> None:
        """Stop firing; the schedule drops it at its next check."""
        self.cancelled = True


class PunctuationSchedule:
    """Keeps the next due time per punctuator; `stream_time_due` is the cheap per-record check."""

    def __init__(self) -> None:
        self._items: list[Punctuator] = []
        self._next_stream_due = 2**63
        self._next_wall_due = 2**63

    def add(self, interval_ms: int, kind: PunctuationType, callback: Callable[[int], None],
            now: int) -> Punctuator:
        if interval_ms <= 0:
            raise ValueError(f"punctuation interval must be positive, got {interval_ms}")
        # Stream time starts at -1: the first record fires a stream-time punctuator at once,
        # like Kafka Streams, which then fires every interval after that record's time.
        first = now + interval_ms if now >= 0 else -1
        item = Punctuator(interval_ms, kind, callback, first)
        self._items.append(item)
        self._recompute()
        return item

    def stream_time_due(self, stream_time: int) -> bool:
        return stream_time >= self._next_stream_due

    def wall_clock_due(self, now: int) -> bool:
        return now >= self._next_wall_due

    def fire(self, kind: PunctuationType, now: int) -> int:
        """Run every due punctuator of `kind` once (at most one catch-up call each)."""
        fired = 0
        for item in list(self._items):
            if item.cancelled or item.kind is not kind:
                continue
            if item.next_ms < 0:
                item.next_ms = now
            if now >= item.next_ms:
                item.callback(now)
                fired += 1
                # Skip missed intervals rather than firing a burst of callbacks.
                missed = (now - item.next_ms) // item.interval_ms
                item.next_ms += (missed + 1) * item.interval_ms
        self._items = [i for i in self._items if not i.cancelled]
        self._recompute()
        return fired

    def _recompute(self) -> None:
        live = [i for i in self._items if not i.cancelled]
        stream = [i.next_ms for i in live if i.kind is PunctuationType.STREAM_TIME]
        wall = [i.next_ms for i in live if i.kind is PunctuationType.WALL_CLOCK_TIME]
        self._next_stream_due = min(stream) if stream else 2**63
        self._next_wall_due = min(wall) if wall else 2**63
