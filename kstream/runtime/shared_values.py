"""The TopologyTestDriver's check that no branch changes a value the other branches share.

When a node has several children (branches, several operators on one stream), each child gets
its own Record but the same key and value objects: copying every value for every branch would
cost more than the rest of the record's path. So values are treated as immutable (as Kafka
Streams' operators treat theirs): an operator returns a new value instead of changing the one
it was given. The driver checks the rule: before each child but the last, it snapshots the
value, and afterwards compares; a difference raises SharedValueMutatedError naming the child.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from kstream.errors import KStreamError
from kstream.record import Record


class SharedValueMutatedError(KStreamError, TypeError):
    """An operator changed, in place, a key or value that other branches also receive."""


def checked_child(child: Callable[[Record], None], name: str) -> Callable[[Record], None]:
    """`child`, failing when it leaves the record's key or value changed in place."""

    def call(record: Record) -> None:
        key, value = record.key, record.value
        try:
            before = copy.deepcopy((key, value))
        except Exception:  # not copyable: nothing to compare against
            child(record)
            return
        child(record)
        if (key, value) != before:
            what, was, now = (("value", before[1], value) if key == before[0]
                              else ("key", before[0], key))
            raise SharedValueMutatedError(
                f"operator {name!r} changed the {what} it was given in place ({was!r:.80} "
                f"became {now!r:.80}); the other branches of its parent receive the same "
                "object. Return a new value instead (e.g. {**value, ...} or a copy).")

    return call
