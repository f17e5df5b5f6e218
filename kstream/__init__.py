"""kstream: Kafka-native stream processing for Python.

The public API is what this module exports; everything in underscore modules and in
`kstream.runtime` is internal.
"""

from kstream.app import App
from kstream.config import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, AppConfig, ConfigError
from kstream.dsl import (
    BranchedStream,
    CogroupedStream,
    GlobalTable,
    GroupedStream,
    GroupedTable,
    Stream,
    StreamBuilder,
    Table,
    WindowedGroupedStream,
)
from kstream.errors import (
    KStreamError,
    MissingTopicsError,
    NotOwnedHereError,
    RecordError,
    StoreNotAvailableError,
    UnknownStoreError,
)
from kstream.hosts import InstanceMetadata, KeyMetadata
from kstream.processor import (
    STREAM_TIME,
    WALL_CLOCK_TIME,
    Cancellable,
    Processor,
    ProcessorContext,
    PunctuationType,
)
from kstream.queries import KeyValueView, SessionView, WindowView
from kstream.record import Record
from kstream.runtime.identity import StateDirLockedError
from kstream.topology import (
    Partitioner,
    TimestampExtractor,
    TopicChooser,
    Topology,
    TopologyError,
)
from kstream.windows import (
    HoppingWindows,
    JoinWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    Windows,
    field_timestamp,
)

__version__ = "0.1.0"

__all__ = [
    "AT_LEAST_ONCE", "AT_MOST_ONCE", "EXACTLY_ONCE", "STREAM_TIME", "WALL_CLOCK_TIME",
    "App", "AppConfig", "BranchedStream", "ConfigError", "KStreamError", "MissingTopicsError",
    "Processor", "ProcessorContext", "PunctuationType", "Record", "RecordError", "Stream",
    "StreamBuilder", "Topology", "TopologyError", "TumblingWindows", "HoppingWindows",
    "SlidingWindows", "SessionWindows", "JoinWindows", "field_timestamp",
    # interactive queries (kstream.queries: the views App.store returns)
    "StoreNotAvailableError", "NotOwnedHereError", "UnknownStoreError", "KeyMetadata",
    "InstanceMetadata", "KeyValueView", "WindowView", "SessionView",
    # every class a DSL chain returns, so they can be named in annotations
    "Table", "GroupedStream", "WindowedGroupedStream", "GroupedTable", "CogroupedStream",
    "GlobalTable",
    # callable types the API takes, and the rest of the public surface
    "TopicChooser", "Partitioner", "TimestampExtractor", "Windows", "Cancellable",
    "StateDirLockedError",
]
