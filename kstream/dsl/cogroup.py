"""Cogroup: several grouped streams folded into one aggregate per key, in one store.

    grouped_a.cogroup(agg_a).cogroup(grouped_b, agg_b).aggregate(init, name="totals")

Each input gets its own aggregate processor (its aggregator), all writing the one store
`name`; their changes merge into the result table. Inputs whose key changed are repartitioned
through `<application_id>-<name>-cogroup-<i>-repartition` (i: the input's position), all with
the first input's key serde, so every input partitions a key alike (co-partitioned).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl import _ops, _stateful
from kstream.dsl.table import Table
from kstream.state import kv_store
from kstream.topology import TopologyError
from serdes import resolve

if TYPE_CHECKING:
    from kstream.dsl.grouped import GroupedStream

Aggregator = Callable[[Any, Any, Any], Any]  # (key, value, aggregate) -> aggregate


class CogroupedStream:
    """Grouped streams with one aggregator each, aggregated together by `aggregate`."""

    def __init__(self, inputs: list[tuple[GroupedStream, Aggregator]]) -> None:
        self._inputs = inputs

    def cogroup(self, grouped: GroupedStream, aggregator: Aggregator) -> CogroupedStream:
        """Add `grouped`, folded with `aggregator(key, value, aggregate) -> aggregate`."""
        if any(g is grouped for g, _ in self._inputs):
            raise TopologyError("this grouped stream is already part of the cogroup")
        return CogroupedStream([*self._inputs, (grouped, aggregator)])

    def aggregate(self, initializer: Callable[[], Any], name: str, *, value_serde: Any = None,
                  backend: str = "rocksdb") -> Table:
        """One aggregate per key over every input, starting from `initializer() ->
        aggregate`; each record folds in with its own stream's `aggregator(key, value,
        aggregate) -> aggregate`. The result is a table (store `name`); aggregates use
        `value_serde`, else the app's `default_value_serde`, else JSON. Example::

            >>> from kstream import StreamBuilder
            >>> from kstream.testing import TopologyTestDriver
            >>> builder = StreamBuilder()
            >>> deposits = builder.stream("deposits", "string", "int32").group_by_key()
            >>> withdrawals = builder.stream("withdrawals", "string", "int32").group_by_key()
            >>> balances = (deposits.cogroup(lambda acct, amount, balance: balance + amount)
            ...     .cogroup(withdrawals, lambda acct, amount, balance: balance - amount)
            ...     .aggregate(lambda: 0, "balances"))
            >>> balances.to_stream().to("balance-updates")
            >>> with TopologyTestDriver(builder) as driver:
            ...     driver.input_topic("deposits", "string", "int32").pipe("acct-1", 100)
            ...     driver.input_topic("withdrawals", "string", "int32").pipe("acct-1", 30)
            ...     driver.output_topic("balance-updates", "string", "json").read_values_to_list()
            [100, 70]
        """
        first = self._inputs[0][0]
        builder = first._stream._builder
        topology = builder.topology
        key_serde = first.key_serde_or_default()
        agg_serde = (resolve(value_serde) if value_serde is not None
                     else topology.serde_defaults.value(f"aggregate {name!r}"))
        store = kv_store(name, key_serde=key_serde, value_serde=agg_serde,
                         backend=backend, timestamped=True)  # type: ignore[arg-type]
        nodes = []
        for i, (grouped, aggregator) in enumerate(self._inputs):
            stream = grouped.source_stream(f"{name}-cogroup-{i}", key_serde)
            node = f"{name}-cogroup-{i}"
            topology.add_processor(node, _aggregate_op(name, initializer, aggregator),
                                   stream.node)
            nodes.append(node)
        topology.add_store(store, *nodes)
        topology.add_processor(name, _ops.PassThroughOp, *nodes)
        return Table(builder, name, key_serde, agg_serde, store_name=name)


def _aggregate_op(store: str, initializer: Callable[[], Any],
                  aggregator: Aggregator) -> Callable[[], _stateful.AggregateOp]:
    return lambda: _stateful.AggregateOp(store, initializer, aggregator)
