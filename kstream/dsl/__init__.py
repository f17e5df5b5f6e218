"""The fluent DSL."""

from kstream.dsl.grouped import GroupedStream, Table
from kstream.dsl.stream import BranchedStream, Stream, StreamBuilder

__all__ = ["BranchedStream", "GroupedStream", "Stream", "StreamBuilder", "Table"]
