"""The DSL's stateless operators as processors.

Hot path: each `process` does the operator's work and calls the next node directly through
`self._down` (bound once in `init`), so a chain of N operators costs N calls per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.topology import Partitioner, SinkNode, TopicChooser
from serdes import Serde, SerdeContext


class _Operator(Processor):
    _down: Callable[[Record], None]

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream


class FilterOp(_Operator):
    def __init__(self, predicate: Callable[[Any, Any], bool], keep_when: bool) -> None:
        self._predicate = predicate
        self._keep_when = keep_when

    def process(self, record: Record) -> None:
        if bool(self._predicate(record.key, record.value)) is self._keep_when:
            self._down(record)


class MapOp(_Operator):
    def __init__(self, mapper: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        record.key, record.value = self._mapper(record.key, record.value)
        self._down(record)


class MapValuesOp(_Operator):
    def __init__(self, mapper: Callable[[Any], Any]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        record.value = self._mapper(record.value)
        self._down(record)


class SelectKeyOp(_Operator):
    def __init__(self, selector: Callable[[Any, Any], Any]) -> None:
        self._selector = selector

    def process(self, record: Record) -> None:
        record.key = self._selector(record.key, record.value)
        self._down(record)


class FlatMapOp(_Operator):
    def __init__(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        down = self._down
        for key, value in self._mapper(record.key, record.value):
            down(Record(key, value, record.timestamp, _copy_headers(record.headers),
                        record.topic, record.partition, record.offset))


class FlatMapValuesOp(_Operator):
    def __init__(self, mapper: Callable[[Any], Iterable[Any]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        down = self._down
        key = record.key
        for value in self._mapper(record.value):
            down(Record(key, value, record.timestamp, _copy_headers(record.headers),
                        record.topic, record.partition, record.offset))


class PeekOp(_Operator):
    def __init__(self, action: Callable[[Any, Any], None]) -> None:
        self._action = action

    def process(self, record: Record) -> None:
        self._action(record.key, record.value)
        self._down(record)


class PassThroughOp(_Operator):
    """Merge point: records from every parent continue unchanged."""

    def process(self, record: Record) -> None:
        self._down(record)


class BranchOp(Processor):
    """Routes each record to the first branch whose predicate holds (or the default branch)."""

    def __init__(self, branches: list[tuple[str, Callable[[Any, Any], bool] | None]]) -> None:
        self._branches = branches

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        children = context._children
        self._routes = [(pred, children[name]) for name, pred in self._branches
                        if pred is not None]
        defaults = [children[name] for name, pred in self._branches if pred is None]
        self._default = defaults[0] if defaults else None

    def process(self, record: Record) -> None:
        key, value = record.key, record.value
        for predicate, child in self._routes:
            if predicate(key, value):
                child(record)
                return
        if self._default is not None:
            self._default(record)


class SinkOp(Processor):
    """Serializes and hands the record to the task's record collector."""

    def __init__(self, node: SinkNode) -> None:
        self._topic: str | TopicChooser = node.topic
        self._key_serde: Serde = node.key_serde
        self._value_serde: Serde = node.value_serde
        self._partitioner: Partitioner | None = node.partitioner

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._collector = context._task.collector
        self._ctx = SerdeContext()
        self._serialize_key = self._key_serde.serialize
        self._serialize_value = self._value_serde.serialize
        self._static_topic = self._topic if isinstance(self._topic, str) else None

    def process(self, record: Record) -> None:
        topic = self._static_topic
        if topic is None:
            topic = self._topic(record)  # type: ignore[operator]
        ctx = self._ctx
        ctx.topic = topic
        ctx.headers = record.headers
        ctx.is_key = True
        key = self._serialize_key(record.key, ctx)
        ctx.is_key = False
        value = self._serialize_value(record.value, ctx)
        partition = -1
        if self._partitioner is not None:
            count = self._collector.partition_count(topic)
            partition = self._partitioner(record.key, record.value, count)
            if not 0 <= partition < count:
                raise ValueError(f"partitioner returned {partition} for {topic} "
                                 f"with {count} partitions")
        self._collector.send(topic, key, value, record.timestamp, record.headers, partition)


def _copy_headers(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]] | None:
    return list(headers) if headers else None
