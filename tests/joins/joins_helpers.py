"""Brute-force reference models of the joins, and driver plumbing for the join tests.

The models are written from the documented semantics (README "Joins", kstream.dsl._join_ops,
kstream.dsl._table_ops), not from the operators' code: plain lists and dicts, every buffered
record compared with every other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kstream import JoinWindows, StreamBuilder
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde

LEFT, RIGHT = 0, 1
KINDS = ("inner", "left", "outer")


@dataclass(frozen=True)
class Event:
    """One input record of a stream-stream join test: side, key, unique id, event time."""

    side: int
    key: str
    ident: int
    ts: int


Output = tuple[str, Any, int]  # (key, value, timestamp)


def joined(left: Any, right: Any) -> list[Any]:
    """The joiner of every test: both values, as JSON (None: no partner)."""
    return [left, right]


def frozen(value: Any) -> Any:
    """A JSON value made hashable (lists become tuples), to count outputs in a Counter."""
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def stream_join_model(events: list[Event], kind: str, windows: JoinWindows
                      ) -> tuple[list[Counter[Output]], int]:
    """What each input record makes the join emit (as a multiset), and the late count.

    Stream time is the largest event time so far. A record older than stream time - grace
    is late: dropped. Otherwise it joins every earlier buffered record of the other side
    with the same key whose time is within the window. An unmatched record of an emitting
    side (left: left and outer joins; right: outer joins) is emitted alone by the first record
    that moves stream time past its close time (t + after + grace for left records,
    t + before + grace for right ones), unless a partner arrived before that.
    """
    emit_side = {LEFT: kind in ("left", "outer"), RIGHT: kind == "outer"}
    buffered: list[Event] = []
    matched: set[int] = set()
    emitted: set[int] = set()
    st = -1
    late = 0
    steps: list[Counter[Output]] = []
    for ev in events:
        st = max(st, ev.ts)
        out: Counter[Output] = Counter()
        steps.append(out)
        if ev.ts < st - windows.grace:
            late += 1
            continue
        for b in buffered:
            if not emit_side[b.side] or b.ident in matched or b.ident in emitted:
                continue
            close = b.ts + (windows.after if b.side == LEFT else windows.before) + windows.grace
            if close < st:
                emitted.add(b.ident)
                value = joined(b.ident, None) if b.side == LEFT else joined(None, b.ident)
                out[(b.key, frozen(value), b.ts)] += 1
        for b in buffered:
            if b.side == ev.side or b.key != ev.key:
                continue
            left, right = (ev, b) if ev.side == LEFT else (b, ev)
            if left.ts - windows.before <= right.ts <= left.ts + windows.after:
                matched.update((ev.ident, b.ident))
                out[(ev.key, frozen(joined(left.ident, right.ident)), max(ev.ts, b.ts))] += 1
        buffered.append(ev)
    return steps, late


def stream_join_builder(kind: str, windows: JoinWindows, *, rekey_left: bool = False,
                        rekey_right: bool = False, backend: str = "memory",
                        late: str = "drop") -> StreamBuilder:
    """left/right topics of {"id", "k"} values -> join by key -> "out" as [left id, right id].

    With `rekey_*`, that side's topic is keyed by something else and `select_key` picks
    the join key from the value: the join then repartitions that side.
    """
    b = StreamBuilder()
    left = b.stream("left", StringSerde(), JsonSerde())
    right = b.stream("right", StringSerde(), JsonSerde())
    if rekey_left:
        left = left.select_key(lambda _k, v: v["k"])
    if rekey_right:
        right = right.select_key(lambda _k, v: v["k"])
    left = left.map_values(lambda v: v["id"])
    right = right.map_values(lambda v: v["id"])
    method: Callable[..., Any] = {"inner": left.join, "left": left.left_join,
                                  "outer": left.outer_join}[kind]
    result = method(right, joined, windows, "j", key_serde=StringSerde(), value_serde="json",
                    other_value_serde="json", backend=backend, late=late)
    result.to("out", key_serde=StringSerde(), value_serde=JsonSerde())
    return b


def run_stream_join(driver: TopologyTestDriver, events: list[Event], rekey: set[int]
                    ) -> list[Counter[Output]]:
    """Pipe the events in order; what the output topic received after each one."""
    inputs = {LEFT: driver.input_topic("left", StringSerde(), JsonSerde()),
              RIGHT: driver.input_topic("right", StringSerde(), JsonSerde())}
    out = driver.output_topic("out", StringSerde(), JsonSerde())
    steps = []
    for ev in events:
        key = f"other-{ev.ident % 3}" if ev.side in rekey else ev.key
        inputs[ev.side].pipe(key, {"id": ev.ident, "k": ev.key}, ev.ts)
        steps.append(Counter((r.key, frozen(r.value), r.timestamp)
                             for r in out.read_records_to_list()))
    return steps


def table_join_model(updates: list[tuple[int, str, Any]], kind: str,
                     left_view: Callable[[Any], Any] | None = None,
                     right_view: Callable[[Any], Any] | None = None
                     ) -> tuple[list[tuple[str, Any] | None], dict[str, Any]]:
    """Per update: the join's change for its key (None: nothing forwarded), and the final
    joined table. Views (filter/map_values on one side) apply to that side's values. An update
    that leaves its side's (viewed) value absent changes nothing; otherwise the joined value
    is forwarded unless it was absent before and after."""
    tables: dict[int, dict[str, Any]] = {LEFT: {}, RIGHT: {}}
    views = {LEFT: left_view or (lambda v: v), RIGHT: right_view or (lambda v: v)}

    def value(side: int, key: str) -> Any:
        raw = tables[side].get(key)
        return None if raw is None else views[side](raw)

    def join(key: str) -> Any:
        lv, rv = value(LEFT, key), value(RIGHT, key)
        if lv is not None and rv is not None:
            return joined(lv, rv)
        if lv is not None and kind in ("left", "outer"):
            return joined(lv, None)
        if rv is not None and kind == "outer":
            return joined(None, rv)
        return None

    out: list[tuple[str, Any] | None] = []
    for side, key, new in updates:
        before, old_side = join(key), value(side, key)
        if new is None:
            tables[side].pop(key, None)
        else:
            tables[side][key] = new
        after, new_side = join(key), value(side, key)
        nothing = (old_side is None and new_side is None) or (before is None and after is None)
        out.append(None if nothing else (key, after))
    keys = set(tables[LEFT]) | set(tables[RIGHT])
    final = {k: v for k in keys if (v := join(k)) is not None}
    return out, final
