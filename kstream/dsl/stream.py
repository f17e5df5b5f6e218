"""The fluent DSL: StreamBuilder → Stream operations → Topology."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from kstream.dsl import _ops
from kstream.dsl._repartition import repartition
from kstream.dsl.grouped import GroupedStream
from kstream.dsl.table import Table
from kstream.processor import Processor
from kstream.topology import Partitioner, TimestampExtractor, TopicChooser, Topology, TopologyError
from kstream.windows import JoinWindows
from serdes import JsonSerde, Serde, resolve

Joiner = Callable[[Any, Any], Any]


class StreamBuilder:
    """Builds a Topology from fluent stream operations."""

    def __init__(self) -> None:
        self.topology = Topology()
        self._counter = itertools.count()

    def _name(self, given: str | None, kind: str) -> str:
        return given if given else f"KSTREAM-{kind}-{next(self._counter):010d}"

    def stream(self, topics: str | Iterable[str], key_serde: Any = None, value_serde: Any = None,
               timestamp_extractor: TimestampExtractor | None = None,
               name: str | None = None) -> Stream:
        """A stream of the records of one or more topics."""
        node = self._name(name, "SOURCE")
        self.topology.add_source(node, topics, key_serde, value_serde, timestamp_extractor)
        source = self.topology.nodes[node]
        return Stream(self, node, source.key_serde, source.value_serde)  # type: ignore[union-attr]

    def table(self, topic: str, key_serde: Any = None, value_serde: Any = None, *,
              name: str, backend: str = "rocksdb",
              timestamp_extractor: TimestampExtractor | None = None) -> Table:
        """The topic as a table: latest value per key, None (tombstone) deletes.

        Materialized in the store `name`; its changelog is the store's own changelog topic.
        """
        from kstream.dsl import _table_ops
        from kstream.state import kv_store

        source = self._name(f"{name}-source", "SOURCE")
        self.topology.add_source(source, topic, key_serde, value_serde, timestamp_extractor)
        src = self.topology.nodes[source]
        store = kv_store(name, key_serde=src.key_serde, value_serde=src.value_serde,  # type: ignore[union-attr]
                         backend=backend)  # type: ignore[arg-type]
        self.topology.add_processor(name, lambda: _table_ops.TableSourceOp(name), source)
        self.topology.add_store(store, name)
        return Table(self, name, src.key_serde, src.value_serde, store_name=name)  # type: ignore[union-attr]

    def build(self) -> Topology:
        return self.topology


class Stream:
    """An unbounded stream of records. Each operation adds a node and returns a new Stream.

    `key_serde`/`value_serde` are what the stream is known to carry; operators that may change
    the key or value type forget them, so `to()` then needs explicit serdes for those parts.
    """

    def __init__(self, builder: StreamBuilder, node: str, key_serde: Serde | None,
                 value_serde: Serde | None, key_changed: bool = False) -> None:
        self._builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        # True once an operator may have changed the key: grouping then repartitions, so
        # records of one key meet in one task.
        self.key_changed = key_changed

    def _then(self, kind: str, supplier: Callable[[], Processor], name: str | None,
              same_key: bool = True, same_value: bool = True,
              parents: Iterable[str] | None = None) -> Stream:
        node = self._builder._name(name, kind)
        self._builder.topology.add_processor(node, supplier, *(parents or [self.node]))
        return Stream(self._builder, node, self.key_serde if same_key else None,
                      self.value_serde if same_value else None,
                      key_changed=self.key_changed or not same_key)

    # -- stateless operators -------------------------------------------------------------------
    def filter(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Stream:
        return self._then("FILTER", lambda: _ops.FilterOp(predicate, True), name)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Stream:
        return self._then("FILTER", lambda: _ops.FilterOp(predicate, False), name)

    def map(self, mapper: Callable[[Any, Any], tuple[Any, Any]], name: str | None = None) -> Stream:
        """New key and value: `mapper(key, value) -> (key, value)`."""
        return self._then("MAP", lambda: _ops.MapOp(mapper), name, False, False)

    def map_values(self, mapper: Callable[[Any], Any], name: str | None = None) -> Stream:
        return self._then("MAPVALUES", lambda: _ops.MapValuesOp(mapper), name, True, False)

    def select_key(self, selector: Callable[[Any, Any], Any], name: str | None = None) -> Stream:
        return self._then("SELECTKEY", lambda: _ops.SelectKeyOp(selector), name, False, True)

    def flat_map(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]],
                 name: str | None = None) -> Stream:
        return self._then("FLATMAP", lambda: _ops.FlatMapOp(mapper), name, False, False)

    def flat_map_values(self, mapper: Callable[[Any], Iterable[Any]],
                        name: str | None = None) -> Stream:
        return self._then("FLATMAPVALUES", lambda: _ops.FlatMapValuesOp(mapper), name, True, False)

    def peek(self, action: Callable[[Any, Any], None], name: str | None = None) -> Stream:
        return self._then("PEEK", lambda: _ops.PeekOp(action), name)

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """One stream of the records of this and the other streams, in arrival order."""
        parents = [self.node, *(o.node for o in others)]
        same_key = all(o.key_serde is self.key_serde for o in others)
        same_value = all(o.value_serde is self.value_serde for o in others)
        merged = self._then("MERGE", _ops.PassThroughOp, name, same_key, same_value, parents)
        merged.key_changed = self.key_changed or any(o.key_changed for o in others)
        return merged

    def split(self, name: str | None = None) -> BranchedStream:
        """Route records to named branches.

        `.split().branch(pred, "a").branch(pred, "b").default_branch()` returns streams by name.
        """
        return BranchedStream(self, self._builder._name(name, "BRANCH"))

    def process(self, supplier: Callable[[], Processor], *stores: str,
                name: str | None = None) -> Stream:
        """Run a Processor API processor (a new instance per task) connected to `stores`."""
        stream = self._then("PROCESSOR", supplier, name, False, False)
        for store in stores:
            self._builder.topology.connect_store(store, stream.node)
        return stream

    # -- stateful ------------------------------------------------------------------------------
    def group_by_key(self, key_serde: Any = None, value_serde: Any = None) -> GroupedStream:
        """Group by the current key (repartitions first if an operator changed the key)."""
        return GroupedStream(self, _maybe(key_serde), _maybe(value_serde), self.key_changed)

    def group_by(self, selector: Callable[[Any, Any], Any], key_serde: Any = None,
                 value_serde: Any = None, name: str | None = None) -> GroupedStream:
        """Group by a new key `selector(key, value)`; aggregations repartition by it."""
        rekeyed = self.select_key(selector, name=name)
        return GroupedStream(rekeyed, _maybe(key_serde), _maybe(value_serde), True)

    def repartition(self, name: str, partitions: int | None = None, key_serde: Any = None,
                    value_serde: Any = None) -> Stream:
        """Write the stream to `<application_id>-<name>-repartition` and read it back, so
        records are partitioned by their current key (e.g. before a join after a key change,
        or to give a join input as many partitions as the other side: `partitions=N`).

        `partitions` None: as many as the inputs feeding it (or the join it feeds). Serdes
        default to what the stream is known to carry, else JSON.
        """
        return repartition(self, name, _serde(key_serde, self.key_serde),
                           _serde(value_serde, self.value_serde), partitions)

    # -- joins ---------------------------------------------------------------------------------
    def join(self, other: Table | Stream, joiner: Joiner, windows: JoinWindows | None = None,
             name: str | None = None, *, key_serde: Any = None, value_serde: Any = None,
             other_value_serde: Any = None, late: str = "drop",
             backend: str = "rocksdb") -> Stream:
        """Inner join: `joiner(value, other_value) -> value`.

        With a Table: each record meets the table's current value for its key (records
        without one are dropped). With a Stream: records of the same key whose times are
        within `windows` (JoinWindows) meet, each pair once, stamped with the later time;
        `name` (required) names the buffering stores, `late` is "drop" or "dead_letter" for
        records older than stream time - grace, serdes default to the streams' own (else
        JSON). See kstream.dsl._join_ops for the exact semantics.
        """
        return self._join(other, joiner, windows, name, False, False, key_serde, value_serde,
                          other_value_serde, late, backend)

    def left_join(self, other: Table | Stream, joiner: Joiner,
                  windows: JoinWindows | None = None, name: str | None = None, *,
                  key_serde: Any = None, value_serde: Any = None, other_value_serde: Any = None,
                  late: str = "drop", backend: str = "rocksdb") -> Stream:
        """Like join, but every record of this stream appears: `joiner(value, None)` when no
        table value exists or, for a stream, once its window closed without a partner."""
        return self._join(other, joiner, windows, name, True, False, key_serde, value_serde,
                          other_value_serde, late, backend)

    def outer_join(self, other: Stream, joiner: Joiner, windows: JoinWindows,
                   name: str | None = None, *, key_serde: Any = None, value_serde: Any = None,
                   other_value_serde: Any = None, late: str = "drop",
                   backend: str = "rocksdb") -> Stream:
        """Windowed stream-stream join where every record of both streams appears:
        `joiner(value, None)` / `joiner(None, other_value)` once its window closed without a
        partner."""
        if not isinstance(other, Stream):
            raise TopologyError("outer_join joins two streams (a stream-table outer join "
                                "does not exist: use left_join)")
        return self._join(other, joiner, windows, name, True, True, key_serde, value_serde,
                          other_value_serde, late, backend)

    def _join(self, other: Table | Stream, joiner: Joiner, windows: JoinWindows | None,
              name: str | None, keep_left: bool, keep_right: bool, key_serde: Any,
              value_serde: Any, other_value_serde: Any, late: str, backend: str) -> Stream:
        from kstream.dsl import joins

        if isinstance(other, Table):
            if windows is not None:
                raise TopologyError("a stream-table join has no windows: it looks up the "
                                    "table's current value")
            return joins.stream_table_join(self, other, joiner, keep_left, name)
        if windows is None:
            raise TopologyError("a stream-stream join needs windows=JoinWindows(...)")
        return joins.stream_stream_join(
            self, other, joiner, windows, keep_left, keep_right, name, key_serde=key_serde,
            value_serde=value_serde, other_value_serde=other_value_serde, late=late,
            backend=backend)

    def to(self, topic: str | TopicChooser, key_serde: Any = None, value_serde: Any = None,
           partitioner: Partitioner | None = None, name: str | None = None) -> None:
        """Write to a topic (or to the topic a callable picks per record)."""
        node = self._builder._name(name, "SINK")
        self._builder.topology.add_sink(
            node, topic, self.node,
            key_serde=key_serde if key_serde is not None else self.key_serde,
            value_serde=value_serde if value_serde is not None else self.value_serde,
            partitioner=partitioner)


class BranchedStream:
    """Collects named branches; `default_branch()` or `branches()` returns them by name."""

    def __init__(self, stream: Stream, node: str) -> None:
        self._stream = stream
        self._node = node
        self._branches: list[tuple[str, Callable[[Any, Any], bool] | None]] = []
        self._done = False

    def branch(self, predicate: Callable[[Any, Any], bool], name: str) -> BranchedStream:
        self._check_open(name)
        self._branches.append((name, predicate))
        return self

    def default_branch(self, name: str = "default") -> dict[str, Stream]:
        self._check_open(name)
        self._branches.append((name, None))
        return self.branches()

    def branches(self) -> dict[str, Stream]:
        """Finish: records matching no predicate (and no default branch) are dropped."""
        if not self._done:
            self._done = True
            routes = [(_branch_node(self._node, b), pred) for b, pred in self._branches]
            builder = self._stream._builder
            builder.topology.add_processor(self._node, lambda: _ops.BranchOp(routes),
                                           self._stream.node)
            for node, _ in routes:
                builder.topology.add_processor(node, _ops.PassThroughOp, self._node)
        return {branch: Stream(self._stream._builder, _branch_node(self._node, branch),
                               self._stream.key_serde, self._stream.value_serde)
                for branch, _ in self._branches}

    def _check_open(self, name: str) -> None:
        if self._done:
            raise TopologyError("split() is finished; start a new split() to add branches")
        if any(existing == name for existing, _ in self._branches):
            raise TopologyError(f"branch {name!r} already exists")


def _maybe(serde: Any) -> Serde | None:
    return None if serde is None else resolve(serde)


def _serde(given: Any, known: Serde | None) -> Serde:
    if given is not None:
        return resolve(given)
    return known if known is not None else JsonSerde()


def _branch_node(split_node: str, branch: str) -> str:
    return f"{split_node}-{branch}"
