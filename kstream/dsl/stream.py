"""The fluent DSL: StreamBuilder → Stream operations → Topology."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, overload

from kstream._serde_defaults import same_serde
from kstream.dsl import _ops
from kstream.dsl._repartition import repartition
from kstream.dsl.global_table import GlobalTable, KeySelector
from kstream.dsl.grouped import GroupedStream
from kstream.dsl.table import Table
from kstream.processor import Processor
from kstream.topology import Partitioner, TimestampExtractor, TopicChooser, Topology, TopologyError
from kstream.windows import JoinWindows
from serdes import Serde, resolve

Joiner = Callable[[Any, Any], Any]


class StreamBuilder:
    """Builds a Topology from fluent stream operations: start with `stream()` or `table()`,
    chain operators, hand the builder to `App` or `TopologyTestDriver`.

    Example::

        >>> from kstream import StreamBuilder
        >>> from kstream.testing import TopologyTestDriver
        >>> builder = StreamBuilder()
        >>> (builder.stream("payments", key_serde="string", value_serde="json")
        ...     .filter(lambda card, payment: payment["amount"] > 0)
        ...     .map_values(lambda payment: payment["amount"])
        ...     .to("amounts", value_serde="int64"))
        >>> with TopologyTestDriver(builder) as driver:
        ...     driver.input_topic("payments", "string", "json").pipe("c1", {"amount": 5})
        ...     driver.output_topic("amounts", "string", "int64").read_key_values_to_list()
        [('c1', 5)]
    """

    def __init__(self) -> None:
        self.topology = Topology()
        self._counter = itertools.count()

    def _name(self, given: str | None, kind: str) -> str:
        return given if given else f"KSTREAM-{kind}-{next(self._counter):010d}"

    def stream(self, topics: str | Iterable[str], key_serde: Any = None, value_serde: Any = None,
               timestamp_extractor: TimestampExtractor | None = None,
               name: str | None = None) -> Stream:
        """A stream of the records of one topic or several (`topics`: a name or names).

        `key_serde`/`value_serde`: a serde, serde class or name ("string", "json", "int64",
        ... see `serdes.resolve`); None reads raw bytes (docs/serdes.md has the rules).
        `timestamp_extractor(record, partition_time) -> event time in ms` sets event time,
        e.g. `field_timestamp("ts")`; default: the Kafka record timestamp. `name` names the
        source node.
        """
        node = self._name(name, "SOURCE")
        self.topology.add_source(node, topics, key_serde, value_serde, timestamp_extractor)
        source = self.topology.nodes[node]
        return Stream(self, node, source.key_serde, source.value_serde)  # type: ignore[union-attr]

    def table(self, topic: str, key_serde: Any = None, value_serde: Any = None, *,
              name: str, backend: str = "rocksdb",
              timestamp_extractor: TimestampExtractor | None = None) -> Table:
        """The topic as a table: latest value per key, None (tombstone) deletes.

        Materialized in the store `name` (`backend` "rocksdb" or "memory"), queryable with
        `app.store(name)`; its changelog is the store's own changelog topic
        (`<application_id>-<name>-changelog`), not the source topic. Serdes and
        `timestamp_extractor` as in `stream()`.

        Example::

            >>> from kstream import StreamBuilder
            >>> builder = StreamBuilder()
            >>> customers = builder.table("customers", "string", "json", name="customers")
            >>> customers.store_name
            'customers'
        """
        from kstream.dsl import _table_ops
        from kstream.state import kv_store

        source = self._name(f"{name}-source", "SOURCE")
        self.topology.add_source(source, topic, key_serde, value_serde, timestamp_extractor)
        src = self.topology.nodes[source]
        store = kv_store(name, key_serde=src.key_serde, value_serde=src.value_serde,  # type: ignore[union-attr]
                         backend=backend, timestamped=True)  # type: ignore[arg-type]
        self.topology.add_processor(name, lambda: _table_ops.TableSourceOp(name), source)
        self.topology.add_store(store, name)
        return Table(self, name, src.key_serde, src.value_serde, store_name=name)  # type: ignore[union-attr]

    def global_table(self, topic: str, key_serde: Any = None, value_serde: Any = None, *,
                     name: str, backend: str = "rocksdb") -> GlobalTable:
        """The whole topic, every partition, in every instance: a GlobalTable for lookups
        by any key (`stream.join(global_table, key_selector, joiner)`), no co-partitioning.

        Held in the global store `name` (`backend` "rocksdb" or "memory"), readable from any
        processor with `context.get_store(name)`. The topic is its changelog: an instance
        reads it to its end offsets (read_committed) before processing anything, then applies
        new records between batches; RocksDB stores checkpoint their offsets, so a restart
        reads only what is new. Serdes as in `stream()`.

        Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> products = builder.global_table("products", "string", "json", name="products")
            >>> (builder.stream("orders", "string", "json")
            ...     .join(products, lambda _id, order: order["sku"],
            ...           lambda order, product: {**order, "title": product["title"]})
            ...     .to("enriched", value_serde="json"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("products", "string", "json").pipe("p1", {"title": "Pen"})
            ...     driver.input_topic("orders", "string", "json").pipe("o1", {"sku": "p1"})
            ...     driver.output_topic("enriched", "string", "json").read_value()
            {'sku': 'p1', 'title': 'Pen'}
        """
        from kstream.state.global_store import global_store

        # A topic you name: no serde given means the app's default, else raw bytes.
        defaults, where = self.topology.serde_defaults, f"global table {name!r}"
        spec = global_store(name, topic,
                            key_serde=(defaults.raw("key", where) if key_serde is None
                                       else resolve(key_serde)),
                            value_serde=(defaults.raw("value", where) if value_serde is None
                                         else resolve(value_serde)),
                            backend=backend)  # type: ignore[arg-type]
        self.topology.add_global_store(spec)
        return GlobalTable(self, name, topic, spec.key_serde, spec.value_serde)

    def build(self) -> Topology:
        """The Topology built so far (`App(builder)` and `TopologyTestDriver(builder)` call
        this themselves)."""
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
        """Keep the records for which `predicate(key, value) -> bool` is true, drop the rest.

        Key and value are unchanged, so the stream keeps its serdes. Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> (builder.stream("payments", "string", "int32")
            ...     .filter(lambda card, cents: cents > 0)
            ...     .to("positive"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("payments", "string", "int32").pipe_many(
            ...         [("a", 5), ("b", -1)])
            ...     driver.output_topic("positive", "string", "int32").read_key_values_to_list()
            [('a', 5)]
        """
        return self._then("FILTER", lambda: _ops.FilterOp(predicate, True), name)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Stream:
        """Drop the records for which `predicate(key, value) -> bool` is true (the inverse of
        `filter`)."""
        return self._then("FILTER", lambda: _ops.FilterOp(predicate, False), name)

    def map(self, mapper: Callable[[Any, Any], tuple[Any, Any]], name: str | None = None) -> Stream:
        """New key and value: `mapper(key, value) -> (new_key, new_value)`.

        Both may change, so the stream forgets its serdes (give `to()` serdes) and a later
        grouping or join repartitions. Prefer `map_values` or `select_key` when only one
        changes.
        """
        return self._then("MAP", lambda: _ops.MapOp(mapper), name, False, False)

    def map_values(self, mapper: Callable[[Any], Any], name: str | None = None) -> Stream:
        """New value per record: `mapper(value) -> new_value`; the key stays (no repartition
        follows). The value serde is forgotten: give `to()` a `value_serde`.

        Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> (builder.stream("words", "string", "string")
            ...     .map_values(len)
            ...     .to("lengths", value_serde="int32"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("words", "string", "string").pipe("k", "kafka")
            ...     driver.output_topic("lengths", "string", "int32").read_value()
            5
        """
        return self._then("MAPVALUES", lambda: _ops.MapValuesOp(mapper), name, True, False)

    def select_key(self, selector: Callable[[Any, Any], Any], name: str | None = None) -> Stream:
        """New key per record: `selector(key, value) -> new_key`; the value stays.

        The key serde is forgotten, and a later grouping or join repartitions by the new key
        (so it needs a `name`)."""
        return self._then("SELECTKEY", lambda: _ops.SelectKeyOp(selector), name, False, True)

    def flat_map(self, mapper: Callable[[Any, Any], Iterable[tuple[Any, Any]]],
                 name: str | None = None) -> Stream:
        """Zero or more records per record: `mapper(key, value) -> iterable of (key, value)`.

        Keys and values may change, as with `map`. Each output keeps the input's timestamp
        and a copy of its headers."""
        return self._then("FLATMAP", lambda: _ops.FlatMapOp(mapper), name, False, False)

    def flat_map_values(self, mapper: Callable[[Any], Iterable[Any]],
                        name: str | None = None) -> Stream:
        """One record per element of `mapper(value) -> iterable of values`, each with the
        input's key (no repartition follows).

        Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> (builder.stream("lines", "string", "string")
            ...     .flat_map_values(str.split)
            ...     .to("words", value_serde="string"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("lines", "string", "string").pipe("l1", "to be")
            ...     driver.output_topic("words", "string", "string").read_values_to_list()
            ['to', 'be']
        """
        return self._then("FLATMAPVALUES", lambda: _ops.FlatMapValuesOp(mapper), name, True, False)

    def peek(self, action: Callable[[Any, Any], None], name: str | None = None) -> Stream:
        """Call `action(key, value) -> None` for each record and pass the record on unchanged
        (logging, metrics). Side effects are not transactional: records replayed after an
        abort or a crash are seen again."""
        return self._then("PEEK", lambda: _ops.PeekOp(action), name)

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """One stream of the records of this and the other streams, in arrival order."""
        parents = [self.node, *(o.node for o in others)]
        same_key = all(same_serde(o.key_serde, self.key_serde) for o in others)
        same_value = all(same_serde(o.value_serde, self.value_serde) for o in others)
        merged = self._then("MERGE", _ops.PassThroughOp, name, same_key, same_value, parents)
        merged.key_changed = self.key_changed or any(o.key_changed for o in others)
        return merged

    def split(self, name: str | None = None) -> BranchedStream:
        """Route records to named branches.

        `.split().branch(pred, "a").branch(pred, "b").default_branch()` returns streams by name;
        `pred(key, value) -> bool`, and a record goes to the first branch whose predicate
        holds. Example::

            >>> from kstream import StreamBuilder
            >>> builder = StreamBuilder()
            >>> amounts = builder.stream("amounts", "string", "int32")
            >>> branches = (amounts.split()
            ...     .branch(lambda k, v: v < 0, "refunds")
            ...     .branch(lambda k, v: v > 1000, "large")
            ...     .default_branch())
            >>> sorted(branches)
            ['default', 'large', 'refunds']
        """
        return BranchedStream(self, self._builder._name(name, "BRANCH"))

    def process(self, supplier: Callable[[], Processor], *stores: str,
                name: str | None = None) -> Stream:
        """Run a Processor API processor (a new instance per task) connected to `stores`.

        `supplier() -> Processor` (a Processor subclass itself works: `.process(Dedupe,
        "seen")`); `stores` are names of stores registered with
        `builder.topology.add_store(...)`, read with `context.get_store(name)`. The processor
        may change key and value, so the stream forgets its serdes.
        """
        stream = self._then("PROCESSOR", supplier, name, False, False)
        for store in stores:
            self._builder.topology.connect_store(store, stream.node)
        return stream

    # -- stateful ------------------------------------------------------------------------------
    def group_by_key(self, key_serde: Any = None, value_serde: Any = None) -> GroupedStream:
        """Group by the current key, to aggregate (`count`, `reduce`, `aggregate`,
        `windowed_by`, `cogroup`).

        Repartitions first (through `<application_id>-<name>-repartition`, `name` being the
        aggregation's) if an operator may have changed the key. `key_serde` is the key serde
        of that topic and of the store, `value_serde` the repartition topic's value serde;
        each defaults to what the stream carries, else the app's default serde, else JSON
        (docs/serdes.md).
        """
        return GroupedStream(self, _maybe(key_serde), _maybe(value_serde), self.key_changed)

    def group_by(self, selector: Callable[[Any, Any], Any], key_serde: Any = None,
                 value_serde: Any = None, name: str | None = None) -> GroupedStream:
        """Group by a new key, `selector(key, value) -> group_key`; the aggregation
        repartitions by it (`<application_id>-<name>-repartition`, `name` being the
        aggregation's).

        Give `key_serde` for the new key: without it the repartition topic and the store use
        JSON (a string key is written as `"a"`, quotes included; docs/serdes.md).
        Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> (builder.stream("accounts", "string", "json")
            ...     .group_by(lambda acct_id, acct: acct["city"], key_serde="string")
            ...     .count("accounts-per-city")
            ...     .to_stream()
            ...     .to("city-counts"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     accounts = driver.input_topic("accounts", "string", "json")
            ...     accounts.pipe("a1", {"city": "Oslo"})
            ...     accounts.pipe("a2", {"city": "Oslo"})
            ...     driver.output_topic("city-counts", "string", "int64").read_key_values_to_dict()
            {'Oslo': 2}
        """
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
        defaults = self._builder.topology.serde_defaults
        where = f"repartition({name!r})"
        return repartition(self, name,
                           _serde(key_serde, self.key_serde) or defaults.key(where),
                           _serde(value_serde, self.value_serde) or defaults.value(where),
                           partitions)

    # -- joins ---------------------------------------------------------------------------------
    @overload
    def join(self, other: GlobalTable, key_selector: KeySelector, joiner: Joiner, /,
             name: str | None = None) -> Stream: ...

    @overload
    def join(self, other: Table | Stream, joiner: Joiner, windows: JoinWindows | None = None,
             name: str | None = None, *, key_serde: Any = None, value_serde: Any = None,
             other_value_serde: Any = None, late: str = "drop",
             backend: str = "rocksdb") -> Stream: ...

    def join(self, other: Table | Stream | GlobalTable, joiner: Joiner,
             windows: JoinWindows | Joiner | None = None, name: str | None = None, *,
             key_serde: Any = None, value_serde: Any = None, other_value_serde: Any = None,
             late: str = "drop", backend: str = "rocksdb") -> Stream:
        """Inner join: `joiner(value, other_value) -> value`.

        With a GlobalTable: `join(global_table, key_selector, joiner)`, where
        `key_selector(key, value) -> lookup key` picks the table row for each record (no
        repartition; records with no row, a None lookup key or a None value are dropped; see
        kstream.dsl.global_table).

        With a Table: each record meets the table's current value for its key (records
        without one are dropped). With a Stream: records of the same key whose times are
        within `windows` (JoinWindows) meet, each pair once, stamped with the later time;
        `name` (required) names the buffering stores, `late` is "drop" or "dead_letter" for
        records older than stream time - grace, serdes default to the streams' own (else
        JSON). See kstream.dsl._join_ops for the exact semantics. Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> customers = builder.table("customers", "string", "json", name="customers")
            >>> orders = builder.stream("orders", "string", "json")
            >>> (orders.join(customers, lambda order, cust: {**order, "name": cust["name"]})
            ...     .to("enriched", value_serde="json"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("customers", "string", "json").pipe("c1", {"name": "Ann"})
            ...     driver.input_topic("orders", "string", "json").pipe("c1", {"total": 9})
            ...     driver.output_topic("enriched", "string", "json").read_value()
            {'total': 9, 'name': 'Ann'}
        """
        return self._join(other, joiner, windows, name, False, False, key_serde, value_serde,
                          other_value_serde, late, backend)

    @overload
    def left_join(self, other: GlobalTable, key_selector: KeySelector, joiner: Joiner, /,
                  name: str | None = None) -> Stream: ...

    @overload
    def left_join(self, other: Table | Stream, joiner: Joiner,
                  windows: JoinWindows | None = None, name: str | None = None, *,
                  key_serde: Any = None, value_serde: Any = None, other_value_serde: Any = None,
                  late: str = "drop", backend: str = "rocksdb") -> Stream: ...

    def left_join(self, other: Table | Stream | GlobalTable, joiner: Joiner,
                  windows: JoinWindows | Joiner | None = None, name: str | None = None, *,
                  key_serde: Any = None, value_serde: Any = None, other_value_serde: Any = None,
                  late: str = "drop", backend: str = "rocksdb") -> Stream:
        """Like join, but every record of this stream appears: `joiner(value, None)` when no
        table value exists or, for a stream, once its window closed without a partner. With
        a GlobalTable, `left_join(global_table, key_selector, joiner)`: records with no row
        get `joiner(value, None)`; a None lookup key or value is still skipped."""
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

    def _join(self, other: Table | Stream | GlobalTable, joiner: Joiner,
              windows: JoinWindows | Joiner | None, name: str | None, keep_left: bool,
              keep_right: bool, key_serde: Any, value_serde: Any, other_value_serde: Any,
              late: str, backend: str) -> Stream:
        from kstream.dsl import joins
        from kstream.dsl.global_table import global_table_join

        if isinstance(other, GlobalTable):
            # join(global_table, key_selector, joiner): the second and third arguments.
            if not callable(windows) or isinstance(windows, JoinWindows):
                raise TopologyError("a stream-global-table join takes (global_table, "
                                    "key_selector, joiner): key_selector(key, value) -> lookup "
                                    "key, joiner(value, table_value) -> value")
            return global_table_join(self, other, joiner, windows, keep_left, name)
        if windows is not None and not isinstance(windows, JoinWindows):
            raise TopologyError(f"windows must be JoinWindows, not {type(windows).__name__}")
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
        """Write each record to `topic`, or to the topic `topic(record) -> str` picks per
        record (a TopicChooser). Ends the chain.

        Serdes default to what the stream carries; after an operator that changed the key or
        value, that part is written as raw bytes unless a serde is given (docs/serdes.md).
        `partitioner(key, value, num_partitions) -> partition` replaces the default
        partitioning (murmur2 of the serialized key, as Java producers).
        """
        node = self._builder._name(name, "SINK")
        defaults = self._builder.topology.serde_defaults
        where = f"to({topic!r})" if isinstance(topic, str) else f"sink {node!r}"
        # A part the stream forgot (an operator may have changed its type) and no serde
        # given: the app's default, else raw bytes, with a warning when the app starts.
        self._builder.topology.add_sink(
            node, topic, self.node,
            key_serde=(key_serde if key_serde is not None else self.key_serde
                       or defaults.raw("key", where, warn=True)),
            value_serde=(value_serde if value_serde is not None else self.value_serde
                         or defaults.raw("value", where, warn=True)),
            partitioner=partitioner)


class BranchedStream:
    """Collects named branches; `default_branch()` or `branches()` returns them by name."""

    def __init__(self, stream: Stream, node: str) -> None:
        self._stream = stream
        self._node = node
        self._branches: list[tuple[str, Callable[[Any, Any], bool] | None]] = []
        self._done = False

    def branch(self, predicate: Callable[[Any, Any], bool], name: str) -> BranchedStream:
        """Add branch `name` for the records where `predicate(key, value) -> bool` holds
        (and no earlier branch's did); returns self to chain more branches."""
        self._check_open(name)
        self._branches.append((name, predicate))
        return self

    def default_branch(self, name: str = "default") -> dict[str, Stream]:
        """Add branch `name` for the records no predicate took, finish, and return every
        branch's stream by name."""
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


def _serde(given: Any, known: Serde | None) -> Serde | None:
    """The serde given, else the one the stream carries (None: use a default placeholder)."""
    return resolve(given) if given is not None else known


def _branch_node(split_node: str, branch: str) -> str:
    return f"{split_node}-{branch}"
