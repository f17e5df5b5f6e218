"""Building a foreign-key table-table join (KIP-213) into the topology.

`left.join(right, foreign_key_extractor, joiner, name=N)` adds (see kstream.dsl._fk_ops for
the processors and the rules they keep):

* under the left table: `N-subscription-send` -> `<app>-N-subscription-registration-topic`,
  keyed by the foreign key's bytes (the right table's key serde), so it is partitioned like
  the right table (the topic takes the right table's partition count);
* in the right table's sub-topology: `N-subscription-source` -> `N-subscription-receive`,
  and `N-foreign-change` under the right table, sharing the store `N-subscription-store`
  (keys: 4-byte length, fk bytes, pk bytes) -> `<app>-N-subscription-response-topic`, each
  response sent to the partition of the left row that subscribed (the left table's count);
* in the left table's sub-topology: `N-response-source` -> `N` (the result table, stored in
  `N-store` unless `materialized` names another store), keyed by the left primary key.

The left table must be partitioned by its key serde's bytes (murmur2), as the topics kstream
writes; the right table likewise, since subscriptions are routed by the FK's bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kstream.dsl._fk_ops import (
    ForeignChangeOp,
    ResponseJoinOp,
    SubscriptionReceiveOp,
    SubscriptionSendOp,
    response_partition,
)
from kstream.dsl._repartition import repartition_topic
from kstream.state import kv_store
from kstream.state.builder import KeyValueStoreBuilder
from kstream.topology import APP_ID, TopologyError
from serdes import BytesSerde, resolve

if TYPE_CHECKING:
    from kstream.dsl.table import Table


def subscription_topic(name: str) -> str:
    return f"{APP_ID}-{name}-subscription-registration-topic"


def response_topic(name: str) -> str:
    return f"{APP_ID}-{name}-subscription-response-topic"


def foreign_key_join(left: Table, right: Table, extractor: Callable[[Any], Any],
                     joiner: Callable[[Any, Any], Any], left_join: bool, name: str | None,
                     materialized: str | KeyValueStoreBuilder | None,
                     value_serde: Any) -> Table:
    """The result Table, keyed like `left` (see the module docstring)."""
    from kstream.dsl.table import Table

    if not name:
        raise TopologyError("a foreign-key join needs a name: it names its topics "
                            "('<application_id>-<name>-subscription-registration-topic', "
                            "'...-subscription-response-topic') and stores")
    repartition_topic(name)  # the same naming rules
    left_get = left.require_getter("foreign-key join")
    right_get = right.require_getter("foreign-key join")
    builder = left._builder
    topology = builder.topology
    defaults, where = topology.serde_defaults, f"foreign-key join {name!r}"
    pk_serde = left.key_serde or defaults.key(where)
    fk_serde = right.key_serde or defaults.key(where)
    left_values = left.value_serde or defaults.value(where)
    right_values = right.value_serde or defaults.value(where)
    results = None if value_serde is None else resolve(value_serde)
    raw = BytesSerde()
    sub_topic = topology.add_internal_topic(subscription_topic(name), "repartition")
    resp_topic = topology.add_internal_topic(response_topic(name), "repartition")

    send = f"{name}-subscription-send"
    topology.add_processor(send, lambda: SubscriptionSendOp(
        extractor, left_join, fk_serde, pk_serde, left_values, sub_topic), left.node)
    topology.add_sink(f"{name}-subscription-sink", sub_topic, send, key_serde=raw,
                      value_serde=raw)

    sub_source, receive, foreign = (f"{name}-subscription-source",
                                    f"{name}-subscription-receive", f"{name}-foreign-change")
    topology.add_source(sub_source, sub_topic, raw, raw)
    topology.add_processor(receive, lambda: SubscriptionReceiveOp(
        f"{name}-subscription-store", right_get, fk_serde, right_values, resp_topic),
        sub_source)
    topology.add_processor(foreign, lambda: ForeignChangeOp(
        f"{name}-subscription-store", fk_serde, right_values, resp_topic), right.node)
    topology.add_store(kv_store(f"{name}-subscription-store", key_serde=raw, value_serde=raw),
                       receive, foreign)
    for store in right_get.stores:
        topology.connect_store(store, receive)
    topology.add_sink(f"{name}-response-sink", resp_topic, receive, foreign, key_serde=raw,
                      value_serde=raw, partitioner=response_partition)

    resp_source = f"{name}-response-source"
    topology.add_source(resp_source, resp_topic, raw, raw)
    if isinstance(materialized, KeyValueStoreBuilder):
        result_store = materialized
    else:
        result_store = kv_store(materialized or f"{name}-store", key_serde=pk_serde,
                                value_serde=results or defaults.value(where))
    store_name = result_store.name
    topology.add_processor(name, lambda: ResponseJoinOp(
        left_get, joiner, left_join, pk_serde, left_values, right_values, store_name,
        resp_topic), resp_source)
    topology.add_store(result_store, name)
    for store in left_get.stores:
        topology.connect_store(store, name)
    return Table(builder, name, pk_serde, results or result_store.value_serde,
                 store_name=store_name)
