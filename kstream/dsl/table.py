"""Tables: the latest value per key, views of them, joins between them, re-grouping.

A Table is a node that forwards `Change(old, new)` records (kstream.dsl._change) plus a
value getter (how other operators read its current value by key: its store, or its
upstream store with the view's functions applied). `to_stream()` turns changes back into
plain values: the new value, None when the key was deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from kstream.dsl import _ops, _stateful, _table_ops
from kstream.dsl._change import ChangeSerde, ToStreamOp
from kstream.dsl._repartition import repartition
from kstream.state import kv_store
from kstream.topology import TopologyError
from serdes import Serde, resolve

if TYPE_CHECKING:
    from kstream.dsl.stream import Stream, StreamBuilder
    from kstream.state.builder import KeyValueStoreBuilder

Joiner = Callable[[Any, Any], Any]


class Table:
    """A changelog view: the latest value per key. Changes flow on as a stream of updates.

    `store_name` is set when the table is materialized (queryable with `driver.get_store`).
    Windowed aggregation results have `changes=False`: their node forwards plain values and
    they can be filtered, mapped and streamed, but not joined or re-grouped.
    """

    def __init__(self, builder: StreamBuilder, node: str, key_serde: Serde | None,
                 value_serde: Serde | None, store_name: str | None, *, changes: bool = True,
                 getter: _table_ops.ValueGetter | None = None) -> None:
        self._builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store_name = store_name
        self.changes = changes
        if getter is None and store_name is not None and changes:
            getter = _table_ops.StoreGetter(store_name)
        self.getter = getter

    # -- to a stream, views ----------------------------------------------------------------------
    def to_stream(self, name: str | None = None) -> Stream:
        """The table's updates as a stream: each key's new value, None when it was deleted."""
        from kstream.dsl.stream import Stream

        node = self._builder._name(name, "TOSTREAM")
        self._builder.topology.add_processor(
            node, ToStreamOp if self.changes else _ops.PassThroughOp, self.node)
        return Stream(self._builder, node, self.key_serde, self.value_serde)

    def filter(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Table:
        """A view holding the values for which `predicate(key, value) -> bool` is true; a key
        whose new value fails it leaves the view (a delete downstream)."""
        return self._filtered(predicate, True, name)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> Table:
        """A view holding the values for which `predicate(key, value) -> bool` is false."""
        return self._filtered(predicate, False, name)

    def _filtered(self, predicate: Callable[[Any, Any], bool], keep_when: bool,
                  name: str | None) -> Table:
        if not self.changes:
            return self._view(lambda: _stateful.PlainTableFilterOp(predicate, keep_when), name,
                              self.value_serde, None)
        getter = (None if self.getter is None
                  else _table_ops.FilterGetter(self.getter, predicate, keep_when))
        return self._view(lambda: _table_ops.TableFilterOp(predicate, keep_when), name,
                          self.value_serde, getter)

    def map_values(self, mapper: Callable[[Any], Any], name: str | None = None) -> Table:
        """A view holding `mapper(value) -> new_value` for every value (deletes stay deletes).

        The value serde is forgotten: give `to()` a `value_serde` after `to_stream()`."""
        if not self.changes:
            return self._view(lambda: _stateful.PlainTableMapValuesOp(mapper), name, None, None)
        getter = None if self.getter is None else _table_ops.MapValuesGetter(self.getter, mapper)
        return self._view(lambda: _table_ops.TableMapValuesOp(mapper), name, None, getter)

    def _view(self, supplier: Callable[[], Any], name: str | None, value_serde: Serde | None,
              getter: _table_ops.ValueGetter | None) -> Table:
        node = self._builder._name(name, "KTABLE-VIEW")
        self._builder.topology.add_processor(node, supplier, self.node)
        return Table(self._builder, node, self.key_serde, value_serde, store_name=None,
                     changes=self.changes, getter=getter)

    # -- joins -----------------------------------------------------------------------------------
    @overload
    def join(self, other: Table, foreign_key_extractor: Callable[[Any], Any], joiner: Joiner,
             /, *, name: str, materialized: str | KeyValueStoreBuilder | None = None,
             value_serde: Any = None) -> Table: ...

    @overload
    def join(self, other: Table, joiner: Joiner, /, name: str | None = None, *,
             materialized: str | KeyValueStoreBuilder | None = None,
             value_serde: Any = None) -> Table: ...

    def join(self, other: Table, *args: Any, name: str | None = None,
             materialized: str | KeyValueStoreBuilder | None = None,
             value_serde: Any = None) -> Table:
        """Inner table-table join: a key is in the result while both tables hold it, with
        `joiner(left_value, right_value) -> value`. Updates and deletes on either side update
        the result; `materialized` (a store name or `kv_store(...)`) stores it.

        Foreign-key join (KIP-213): `join(other, foreign_key_extractor, joiner, name=...)`,
        where `foreign_key_extractor(left_value) -> key of other` picks the right row; the
        result is keyed like this table, has a row while the left row's foreign key finds a
        right row, and follows changes, FK changes and deletes on both sides (see
        kstream.dsl.foreign_key; `name` names its topics and stores). Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> customers = builder.table("customers", "string", "json", name="customers")
            >>> orders = builder.table("orders", "string", "json", name="orders")
            >>> (orders.join(customers, lambda order: order["customer"],
            ...              lambda order, customer: {**order, "name": customer["name"]},
            ...              name="order-customer")
            ...     .to_stream().to("enriched", value_serde="json"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("customers", "string", "json").pipe("c1", {"name": "Ann"})
            ...     driver.input_topic("orders", "string", "json").pipe("o1", {"customer": "c1"})
            ...     driver.output_topic("enriched", "string", "json").read_key_value()
            ('o1', {'customer': 'c1', 'name': 'Ann'})
        """
        return self._join(other, args, False, name, materialized, value_serde)

    @overload
    def left_join(self, other: Table, foreign_key_extractor: Callable[[Any], Any],
                  joiner: Joiner, /, *, name: str,
                  materialized: str | KeyValueStoreBuilder | None = None,
                  value_serde: Any = None) -> Table: ...

    @overload
    def left_join(self, other: Table, joiner: Joiner, /, name: str | None = None, *,
                  materialized: str | KeyValueStoreBuilder | None = None,
                  value_serde: Any = None) -> Table: ...

    def left_join(self, other: Table, *args: Any, name: str | None = None,
                  materialized: str | KeyValueStoreBuilder | None = None,
                  value_serde: Any = None) -> Table:
        """Every key of this table: `joiner(left_value, right_value) -> value`, with
        `right_value` None while the other table lacks the key. Options as in `join`;
        `left_join(other, foreign_key_extractor, joiner, name=...)` is the foreign-key left
        join (every left row, `right_value` None while its foreign key finds no row or is
        None)."""
        return self._join(other, args, True, name, materialized, value_serde)

    def _join(self, other: Table, args: tuple[Any, ...], keep_left: bool, name: str | None,
              materialized: str | KeyValueStoreBuilder | None, value_serde: Any) -> Table:
        from kstream.dsl.foreign_key import foreign_key_join
        from kstream.dsl.joins import table_table_join

        if len(args) >= 2 and callable(args[1]):  # (foreign_key_extractor, joiner)
            if len(args) > 2:
                raise TopologyError("a foreign-key join takes (other, foreign_key_extractor, "
                                    "joiner, name=...)")
            return foreign_key_join(self, other, args[0], args[1], keep_left, name,
                                    materialized, value_serde)
        if not args or len(args) > 2:
            raise TopologyError("a table-table join takes (other, joiner, name=None)")
        if len(args) == 2:
            if name is not None:
                raise TopologyError("name given twice")
            name = args[1]
        return table_table_join(self, other, args[0], keep_left, False, name, materialized,
                                value_serde)

    def outer_join(self, other: Table, joiner: Joiner, name: str | None = None, *,
                   materialized: str | KeyValueStoreBuilder | None = None,
                   value_serde: Any = None) -> Table:
        """Every key of either table: `joiner(left_value, right_value) -> value`, the missing
        side None. Options as in `join`."""
        from kstream.dsl.joins import table_table_join

        return table_table_join(self, other, joiner, True, True, name, materialized,
                                value_serde)

    # -- re-grouping -----------------------------------------------------------------------------
    def group_by(self, selector: Callable[[Any, Any], tuple[Any, Any]], key_serde: Any = None,
                 value_serde: Any = None) -> GroupedTable:
        """Re-group by `selector(key, value) -> (group_key, group_value)` to aggregate per
        group.

        When a key's value moves to another group, its old value is subtracted from the old
        group and its new value added to the new one (see GroupedTable). `key_serde` and
        `value_serde` are the repartition topic's (and the key serde the store's); JSON when
        not given (docs/serdes.md). Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> accounts = builder.table("accounts", "string", "json", name="accounts")
            >>> (accounts.group_by(lambda acct_id, acct: (acct["city"], acct), key_serde="string")
            ...     .count("accounts-per-city")
            ...     .to_stream()
            ...     .to("city-counts"))
            >>> with TopologyTestDriver(builder) as driver:
            ...     pipe = driver.input_topic("accounts", "string", "json").pipe
            ...     pipe("a1", {"city": "Oslo"})
            ...     pipe("a1", {"city": "Rome"})     # a1 moves: Oslo 1 -> 0, Rome 0 -> 1
            ...     driver.output_topic("city-counts", "string", "int64").read_key_values_to_dict()
            {'Oslo': 0, 'Rome': 1}
        """
        self.require_changes("group_by")
        return GroupedTable(self, selector,
                            None if key_serde is None else resolve(key_serde),
                            None if value_serde is None else resolve(value_serde))

    # -- helpers ---------------------------------------------------------------------------------
    def require_changes(self, operation: str) -> None:
        """Raise TopologyError naming `operation` if this table is a windowed aggregation
        result (those forward plain values, not changes)."""
        if not self.changes:
            raise TopologyError(f"{operation} is not supported on windowed aggregation "
                                "results; stream them to a topic and read that as a table")

    def require_getter(self, operation: str) -> _table_ops.ValueGetter:
        """How `operation` (a join) reads this table's current value per key; TopologyError
        if its values cannot be looked up."""
        self.require_changes(operation)
        if self.getter is None:
            raise TopologyError(f"{operation} needs a table whose values can be looked up")
        return self.getter

    def require_store(self, operation: str) -> str:
        """The name of the store materializing this table; TopologyError naming `operation`
        if it is a view without one."""
        if self.store_name is None:
            raise TopologyError(f"{operation} needs a materialized table: use a table from "
                                "builder.table(...) or an aggregation result")
        return self.store_name


class GroupedTable:
    """A table re-grouped by a new key, ready to aggregate (Kafka Streams' KGroupedTable).

    Each change goes through `<application_id>-<name>-repartition` as a removal of the old
    value from its group and an addition of the new value to its group (one record when the
    group is the same), so aggregates stay exact when a key moves between groups.
    """

    def __init__(self, table: Table, selector: Callable[[Any, Any], tuple[Any, Any]],
                 key_serde: Serde | None, value_serde: Serde | None) -> None:
        self._table = table
        self._selector = selector
        self._key_serde = key_serde
        self._value_serde = value_serde

    def count(self, name: str, *, backend: str = "rocksdb") -> Table:
        """Values per group; a group whose values all left keeps the count 0."""
        return self.aggregate(lambda: 0, _plus_one, _minus_one, name, value_serde="int64",
                              backend=backend)

    def reduce(self, adder: Callable[[Any, Any], Any], subtractor: Callable[[Any, Any], Any],
               name: str, *, value_serde: Any = None, backend: str = "rocksdb") -> Table:
        """`adder(aggregate, value) -> aggregate` and `subtractor(aggregate, value) ->
        aggregate`; a group's first value is its initial aggregate. The store's value serde
        is `value_serde`, else the group_by's `value_serde` (a reduce keeps the value type),
        else the app's `default_value_serde`, else JSON."""
        if value_serde is None:
            value_serde = self._value_serde
        return self._build(None, lambda _k, v, agg: adder(agg, v),
                           lambda _k, v, agg: subtractor(agg, v), name, value_serde, backend)

    def aggregate(self, initializer: Callable[[], Any], adder: Callable[[Any, Any, Any], Any],
                  subtractor: Callable[[Any, Any, Any], Any], name: str, *,
                  value_serde: Any = None, backend: str = "rocksdb") -> Table:
        """`adder(key, value, aggregate) -> aggregate` for values joining a group,
        `subtractor(key, value, aggregate) -> aggregate` for values leaving it, starting
        from `initializer()`."""
        return self._build(initializer, adder, subtractor, name, value_serde, backend)

    def _build(self, initializer: Callable[[], Any] | None, adder: Callable[[Any, Any, Any], Any],
               subtractor: Callable[[Any, Any, Any], Any], name: str, value_serde: Any,
               backend: str) -> Table:
        from kstream.dsl.stream import Stream

        table, selector = self._table, self._selector
        builder = table._builder
        defaults, where = builder.topology.serde_defaults, f"group_by for {name!r}"
        # The selector makes a new key: the table's key serde says nothing about it.
        key_serde = self._key_serde or defaults.key(where, warn=True)
        regroup = f"{name}-regroup"
        builder.topology.add_processor(regroup, lambda: _table_ops.TableRegroupOp(selector),
                                       table.node)
        changes = repartition(Stream(builder, regroup, None, None), name, key_serde,
                              ChangeSerde(self._value_serde or defaults.value(where)))
        agg_serde = (resolve(value_serde) if value_serde is not None
                     else defaults.value(f"aggregate {name!r}"))
        store = kv_store(name, key_serde=key_serde, value_serde=agg_serde,
                         backend=backend, timestamped=True)  # type: ignore[arg-type]
        node = builder._name(name, "KTABLE-AGGREGATE")
        builder.topology.add_processor(
            node, lambda: _table_ops.TableAggregateOp(name, initializer, adder, subtractor),
            changes.node)
        builder.topology.add_store(store, node)
        return Table(builder, node, key_serde, agg_serde, store_name=name)


def _plus_one(_key: Any, _value: Any, count: int) -> int:
    return count + 1


def _minus_one(_key: Any, _value: Any, count: int) -> int:
    return count - 1
