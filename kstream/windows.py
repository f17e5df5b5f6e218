"""Event time and windows: timestamp extractors and the four window kinds.

Event time: by default a record's time is its Kafka record timestamp (producer create time or
broker log-append time). `builder.stream(..., timestamp_extractor=field_timestamp("ts"))`
reads it from the value instead. Each task's stream time is the largest timestamp it has seen;
a window closes when stream time reaches its close time (end + grace, see each kind), after
which records for it are late: dropped from the aggregate, counted, and optionally
dead-lettered.

Durations are milliseconds (int) or `datetime.timedelta`. Grace is explicit and defaults to 0.
Windows are `[start, end)` for tumbling/hopping windows (like Kafka's TimeWindows) and
`[start, end]` (both inclusive) for sliding and session windows (like Kafka's SlidingWindows
and SessionWindows); `Windowed(key, start, end)` carries the bounds either way.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kstream.record import Record

__all__ = ["TumblingWindows", "HoppingWindows", "SlidingWindows", "SessionWindows",
           "JoinWindows", "field_timestamp", "to_millis", "Windows"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def to_millis(duration: int | _dt.timedelta, what: str = "duration") -> int:
    """A duration as whole milliseconds (ints pass through; bools and negatives are errors)."""
    if isinstance(duration, _dt.timedelta):
        ms = duration // _dt.timedelta(milliseconds=1)
    elif isinstance(duration, int) and not isinstance(duration, bool):
        ms = duration
    else:
        raise TypeError(f"{what} must be milliseconds (int) or a timedelta, "
                        f"not {type(duration).__name__}")
    if ms < 0:
        raise ValueError(f"{what} must not be negative, got {ms} ms")
    return ms


def _positive(duration: int | _dt.timedelta, what: str) -> int:
    ms = to_millis(duration, what)
    if ms <= 0:
        raise ValueError(f"{what} must be positive, got {ms} ms")
    return ms


@dataclass(frozen=True, init=False)
class TumblingWindows:
    """Fixed-size, non-overlapping windows `[n*size, (n+1)*size)`; closed at end + grace."""

    size: int
    grace: int

    def __init__(self, size: int | _dt.timedelta, grace: int | _dt.timedelta = 0) -> None:
        object.__setattr__(self, "size", _positive(size, "window size"))
        object.__setattr__(self, "grace", to_millis(grace, "grace"))

    @property
    def advance(self) -> int:
        """How far apart window starts are: the size (windows do not overlap)."""
        return self.size

    @property
    def retention(self) -> int:
        """How long (ms of stream time) the store keeps a window: size + grace."""
        return self.size + self.grace

    def window_starts(self, ts: int) -> list[int]:
        """The start of the one window holding `ts`."""
        return [ts - ts % self.size]


@dataclass(frozen=True, init=False)
class HoppingWindows:
    """Fixed-size windows starting every `advance` ms (they overlap when advance < size)."""

    size: int
    advance: int
    grace: int

    def __init__(self, size: int | _dt.timedelta, advance: int | _dt.timedelta,
                 grace: int | _dt.timedelta = 0) -> None:
        size_ms, advance_ms = _positive(size, "window size"), _positive(advance, "advance")
        if advance_ms > size_ms:
            raise ValueError(f"advance ({advance_ms} ms) must not exceed the window size "
                             f"({size_ms} ms): records between windows would be lost")
        object.__setattr__(self, "size", size_ms)
        object.__setattr__(self, "advance", advance_ms)
        object.__setattr__(self, "grace", to_millis(grace, "grace"))

    @property
    def retention(self) -> int:
        """How long (ms of stream time) the store keeps a window: size + grace."""
        return self.size + self.grace

    def window_starts(self, ts: int) -> list[int]:
        """Starts of every window holding `ts`, oldest first (as Kafka's TimeWindows)."""
        size, advance = self.size, self.advance
        first = max(0, ts - size + advance)
        first -= first % advance
        return list(range(first, ts + 1, advance))


@dataclass(frozen=True, init=False)
class SlidingWindows:
    """Kafka Streams' sliding windows: `[t - max_difference, t]`, defined by the records.

    Each record at t has a left window ending at t and, when later records fall within
    max_difference after it, a right window starting at t + 1; only windows holding records
    exist. A window closes when stream time passes end + grace.
    """

    max_difference: int
    grace: int

    def __init__(self, max_difference: int | _dt.timedelta,
                 grace: int | _dt.timedelta = 0) -> None:
        object.__setattr__(self, "max_difference",
                           _positive(max_difference, "max_difference"))
        object.__setattr__(self, "grace", to_millis(grace, "grace"))

    @property
    def retention(self) -> int:
        """The window store's retention in ms of stream time: 2 * max_difference + grace +
        1."""
        # A new record's left window is derived from a window ending up to 2d before it.
        return 2 * self.max_difference + self.grace + 1


@dataclass(frozen=True, init=False)
class SessionWindows:
    """Per-key sessions of activity: records closer than `inactivity_gap` share a session.

    A session is `[first record time, last record time]`; a record that bridges two sessions
    merges them. A session closes when stream time passes end + inactivity_gap + grace (no
    record that could extend it can still arrive in time); closed sessions are final and never
    merged again. A record is late when even its merged session would end before stream time
    - grace (as Kafka Streams).
    """

    inactivity_gap: int
    grace: int

    def __init__(self, inactivity_gap: int | _dt.timedelta,
                 grace: int | _dt.timedelta = 0) -> None:
        object.__setattr__(self, "inactivity_gap", _positive(inactivity_gap, "inactivity_gap"))
        object.__setattr__(self, "grace", to_millis(grace, "grace"))

    @property
    def retention(self) -> int:
        """The session store's retention in ms of stream time: inactivity_gap + grace + 1."""
        return self.inactivity_gap + self.grace + 1


@dataclass(frozen=True, init=False)
class JoinWindows:
    """Which records of two streams join: a left record at t meets right records of the same
    key with times in [t - before, t + after] (as Kafka Streams' JoinWindows).

    `grace` bounds how far behind stream time a record may arrive: a record older than stream
    time - grace is late (dropped and counted, never joined). An unmatched record of a
    left/outer join is emitted once no record that could match it can still arrive: when
    stream time passes t + after + grace (left records) or t + before + grace (right records).
    Both sides are buffered for before + after + grace of stream time.
    """

    before: int
    after: int
    grace: int

    def __init__(self, before: int | _dt.timedelta, after: int | _dt.timedelta,
                 grace: int | _dt.timedelta = 0) -> None:
        object.__setattr__(self, "before", to_millis(before, "before"))
        object.__setattr__(self, "after", to_millis(after, "after"))
        object.__setattr__(self, "grace", to_millis(grace, "grace"))

    @classmethod
    def of(cls, time_difference: int | _dt.timedelta,
           grace: int | _dt.timedelta = 0) -> JoinWindows:
        """Symmetric windows: records at most `time_difference` apart join."""
        return cls(time_difference, time_difference, grace)

    @property
    def retention(self) -> int:
        """How long (ms of stream time) the join buffers keep a record: before + after +
        grace (at least 1)."""
        return max(self.before + self.after + self.grace, 1)


Windows = TumblingWindows | HoppingWindows | SlidingWindows | SessionWindows


def field_timestamp(field: str | Callable[[Any], Any]) -> Callable[[Record, int], int]:
    """A timestamp extractor reading event time from the record's value.

    `field` is a key of a mapping value (or an attribute name) or a callable `value -> time`.
    The time may be epoch milliseconds (int), an ISO-8601 string or a datetime (naive means
    UTC). A missing or unreadable time raises, which the task reports as a RecordError with
    stage "timestamp" for the error policy to handle.
    """
    if callable(field):
        getter: Callable[[Any], Any] = field
    else:
        name = field

        def getter(value: Any) -> Any:
            if isinstance(value, dict):
                return value[name]
            return getattr(value, name)

    def extract(record: Record, partition_time: int) -> int:
        return _to_epoch_ms(getter(record.value))

    return extract


def _to_epoch_ms(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = _dt.datetime.fromisoformat(text)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return (value - _EPOCH) // _dt.timedelta(milliseconds=1)
    raise ValueError(f"not a timestamp: {value!r} ({type(value).__name__})")
