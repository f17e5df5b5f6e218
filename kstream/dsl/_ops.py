"""The DSL's stateless operators as processors, each with its fused form beside `process`.

Hot path: each `process` does the operator's work and calls the next node directly through
`self._down` (bound once in `init`), so a chain of N operators costs N calls per record.
`fuse` writes the same work into the source's generated function (kstream.runtime.fusion),
where only the user's functions are called. Invariant for every pair: fused == process (see
`kstream.runtime.operator.Fusable`); tests/driver/test_fusion_property.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from kstream.processor import Processor, ProcessorContext
from kstream.record import Headers, Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult


class _Operator(Processor):
    _down: Callable[[Record], None]

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream


class FilterOp(_Operator, Fusable):
    def __init__(self, predicate: Callable[[Any, Any], bool], keep_when: bool) -> None:
        self._predicate = predicate
        self._keep_when = keep_when

    def process(self, record: Record) -> None:
        if bool(self._predicate(record.key, record.value)) is self._keep_when:
            self._down(record)

    # `not x` / `if x` apply bool() exactly as `process` does.
    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        neg = "not " if self._keep_when else ""
        em.line(depth, f"if {neg}{em.bind(self._predicate, 'pred')}(key, value): {skip}")
        return FuseResult(depth, skip)


class MapOp(_Operator, Fusable):
    def __init__(self, mapper: Callable[[Any, Any], tuple[Any, Any]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        record.key, record.value = self._mapper(record.key, record.value)
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        em.line(depth, f"key, value = {em.bind(self._mapper, 'map')}(key, value)")
        return FuseResult(depth, skip)


class MapValuesOp(_Operator, Fusable):
    def __init__(self, mapper: Callable[[Any], Any]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        record.value = self._mapper(record.value)
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        em.line(depth, f"value = {em.bind(self._mapper, 'mapv')}(value)")
        return FuseResult(depth, skip)


class SelectKeyOp(_Operator, Fusable):
    def __init__(self, selector: Callable[[Any, Any], Any]) -> None:
        self._selector = selector

    def process(self, record: Record) -> None:
        record.key = self._selector(record.key, record.value)
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        em.line(depth, f"key = {em.bind(self._selector, 'sel')}(key, value)")
        return FuseResult(depth, skip)


class FlatMapOp(_Operator, Fusable):
    def __init__(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        down = self._down
        for key, value in self._mapper(record.key, record.value):
            down(Record(key, value, record.timestamp, _copy_headers(record.headers),
                        record.topic, record.partition, record.offset))

    # One loop iteration per output; like the Record above, each output owns a header copy.
    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        headers = em.local("headers")
        em.line(depth, f"{headers} = headers")
        em.line(depth, f"for key, value in {em.bind(self._mapper, 'fm')}(key, value):")
        em.line(depth + 1, f"headers = {_COPY.format(headers)}")
        return FuseResult(depth + 1, "continue")


class FlatMapValuesOp(_Operator, Fusable):
    def __init__(self, mapper: Callable[[Any], Iterable[Any]]) -> None:
        self._mapper = mapper

    def process(self, record: Record) -> None:
        down = self._down
        key = record.key
        for value in self._mapper(record.value):
            down(Record(key, value, record.timestamp, _copy_headers(record.headers),
                        record.topic, record.partition, record.offset))

    # Later operators may rebind `key` and `headers`; every value starts from the input's.
    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        key, headers = em.local("key"), em.local("headers")
        em.line(depth, f"{key} = key; {headers} = headers")
        em.line(depth, f"for value in {em.bind(self._mapper, 'fmv')}(value):")
        em.line(depth + 1, f"key = {key}; headers = {_COPY.format(headers)}")
        return FuseResult(depth + 1, "continue")


class PeekOp(_Operator, Fusable):
    def __init__(self, action: Callable[[Any, Any], None]) -> None:
        self._action = action

    def process(self, record: Record) -> None:
        self._action(record.key, record.value)
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        em.line(depth, f"{em.bind(self._action, 'peek')}(key, value)")
        return FuseResult(depth, skip)


class PassThroughOp(_Operator, Fusable):
    """Merge point: records from every parent continue unchanged."""

    def process(self, record: Record) -> None:
        self._down(record)

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        return FuseResult(depth, skip)


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


_COPY = "list({0}) if {0} is not None else None"
"""`_copy_headers` as an expression of the generated code."""


def _copy_headers(headers: Headers | None) -> Headers | None:
    """Each output owns its list, even an empty one: a serde or processor may append to it."""
    return list(headers) if headers is not None else None
