"""What a reference topology tells `kstream demo`: its topics, sample data and how to print
results. Kept tiny so topologies stay plain modules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kstream.record import Record
from kstream.topology import Topology

SampleRecord = tuple[str, Any, Any, int]
"""(topic, key, value, timestamp ms): deserialized; the demo serializes with `input_serdes`."""


@dataclass(frozen=True)
class DemoSpec:
    build: Callable[..., Topology]  # called with the (renamed) input, then output topics
    inputs: dict[str, int]  # topic -> partitions
    input_serdes: dict[str, tuple[Any, Any]]  # topic -> (key serde, value serde)
    outputs: dict[str, tuple[Any, Any]]  # topic -> (key serde, value serde)
    generate: Callable[[int], Iterable[SampleRecord]]
    summarize: Callable[[dict[str, list[Record]]], str]
    default_records: int = 1000
    settings: dict[str, Any] = field(default_factory=dict)
