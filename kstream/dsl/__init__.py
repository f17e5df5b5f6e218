"""The fluent DSL."""

from kstream.dsl.stream import BranchedStream, Stream, StreamBuilder

__all__ = ["BranchedStream", "Stream", "StreamBuilder"]
