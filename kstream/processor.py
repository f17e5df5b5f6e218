"""The low-level Processor API; the DSL's operators are processors too.

A processor instance belongs to one task (one partition of one sub-topology), so it may keep
plain instance state; durable state belongs in stores, which survive crashes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from kstream.record import Record
from kstream.runtime.shared_values import checked_child

if TYPE_CHECKING:
    from kstream.runtime.task import Task

Forward = Callable[[Record], None]


class PunctuationType(enum.Enum):
    """When a scheduled callback fires: on stream time (advanced by records) or wall-clock time."""

    STREAM_TIME = "stream_time"
    WALL_CLOCK_TIME = "wall_clock_time"


STREAM_TIME = PunctuationType.STREAM_TIME
WALL_CLOCK_TIME = PunctuationType.WALL_CLOCK_TIME


class Cancellable(Protocol):
    """What `ProcessorContext.schedule` returns: `cancel()` stops the punctuation."""

    def cancel(self) -> None:
        """Stop firing the scheduled callback."""


class Processor:
    """Subclass and implement `process`; call `self.context.forward(record)` to emit.

    Connect it with `stream.process(MyProcessor, "store", ...)` or
    `topology.add_processor(name, MyProcessor, parent)`: one instance per task.
    """

    context: ProcessorContext

    def init(self, context: ProcessorContext) -> None:
        """Called once before the first record; keeps `context` as `self.context`. Override
        to look up stores (`context.get_store(name)`) and schedule punctuations; call
        `super().init(context)` first."""
        self.context = context

    def process(self, record: Record) -> None:
        """Handle one record. The default forwards it unchanged."""
        self.context.forward(record)

    def close(self) -> None:
        """Release resources when the task closes (rebalance or shutdown)."""


class ProcessorContext:
    """What a processor instance sees of its task: forwarding, stores, time and scheduling."""

    __slots__ = ("_task", "node_name", "_children", "_downstream")

    def __init__(self, task: Task, node_name: str) -> None:
        self._task = task
        self.node_name = node_name
        self._children: dict[str, Forward] = {}
        self._downstream: Forward = _drop

    def _skip(self, reason: str, record: Record) -> None:
        """DSL operators: `record` cannot take part (null key/value); counted and logged."""
        self._task.skip(reason, self.node_name, record)

    # -- wiring (done by the task) -------------------------------------------------------------
    def _connect(self, children: dict[str, Forward]) -> None:
        """Bind the fast downstream path; fan-out hands copies to all but the last child."""
        self._children = children
        targets = list(children.values())
        if not targets:
            self._downstream = _drop
        elif len(targets) == 1:
            self._downstream = targets[0]
        else:
            head, last = targets[:-1], targets[-1]
            if self._task.check_shared_values:
                head = [checked_child(child, name) for child, name in zip(head, children,
                                                                           strict=False)]

            def fan_out(record: Record) -> None:
                for child in head:
                    child(record.copy())
                last(record)

            self._downstream = fan_out

    # -- public API ----------------------------------------------------------------------------
    def forward(self, record: Record, to: str | None = None) -> None:
        """Send a record to all children, or to the child named `to`."""
        if to is None:
            self._downstream(record)
            return
        try:
            child = self._children[to]
        except KeyError:
            raise KeyError(f"{self.node_name} has no child named {to!r}; "
                           f"children: {sorted(self._children)}") from None
        child(record)

    def get_store(self, name: str) -> Any:
        """The task's instance of the store `name` (connect it to this processor first)."""
        return self._task.get_store(name, self.node_name)

    def schedule(self, interval_ms: int, kind: PunctuationType,
                 callback: Callable[[int], None]) -> Cancellable:
        """Call `callback(timestamp) -> None` every `interval_ms` of stream time
        (`STREAM_TIME`: advanced by records) or wall-clock time (`WALL_CLOCK_TIME`).
        Returns a handle whose `cancel()` stops it."""
        return self._task.schedule(interval_ms, kind, callback)

    @property
    def application_id(self) -> str:
        """The application id (consumer group, prefix of internal topics)."""
        return self._task.application_id

    @property
    def task_id(self) -> str:
        """This task's id: `<sub-topology>_<partition>`, as Kafka Streams names tasks."""
        return self._task.task_id

    @property
    def partition(self) -> int:
        """The input partition this task processes."""
        return self._task.partition

    @property
    def stream_time(self) -> int:
        """The largest record timestamp this task has seen (-1 before the first record)."""
        return self._task.stream_time

    @property
    def wall_clock_time(self) -> int:
        """The current wall-clock time in ms (the driver's clock under TopologyTestDriver)."""
        return self._task.wall_clock_ms()


def _drop(record: Record) -> None:
    """A node without children: the record ends here."""
