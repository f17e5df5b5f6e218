"""The fluent DSL."""

from kstream.dsl.cogroup import CogroupedStream
from kstream.dsl.global_table import GlobalTable
from kstream.dsl.grouped import GroupedStream
from kstream.dsl.stream import BranchedStream, Stream, StreamBuilder
from kstream.dsl.table import GroupedTable, Table
from kstream.dsl.windowed import WindowedGroupedStream

__all__ = ["BranchedStream", "CogroupedStream", "GlobalTable", "GroupedStream", "GroupedTable",
           "Stream", "StreamBuilder", "Table", "WindowedGroupedStream"]
