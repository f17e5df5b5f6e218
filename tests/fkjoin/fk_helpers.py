"""A brute-force model of the foreign-key table-table join, and the topology the tests use.

Orders (left, key "o<n>", value {"n": version, "c": customer id or None}) join customers
(right, key "c<n>", value a string) by `order["c"]`; the result is [version, customer]. The
model recomputes the whole result table from both tables after every input (written from
the documented semantics, README "Foreign-key joins", not from the operators):

* inner: a row per order whose customer exists: [n, customer];
* left: a row per order: [n, customer or None] (a None FK finds nothing).

Inner joins skip left updates whose old or new FK is None (Kafka Streams' rule), so the
random sequences for inner joins never use a None FK; a dedicated test covers that rule.
"""

from __future__ import annotations

from typing import Any

from kstream import StreamBuilder

Op = tuple[str, str, Any]  # ("order", key, {"n", "c"} or None) | ("customer", key, str or None)


def fk_builder(left: bool, orders: str = "orders", customers: str = "customers",
               out: str = "out", name: str = "fk", backend: str = "memory") -> StreamBuilder:
    b = StreamBuilder()
    cust = b.table(customers, "string", "json", name=f"{name}-customers", backend=backend)
    ords = b.table(orders, "string", "json", name=f"{name}-orders", backend=backend)
    join = ords.left_join if left else ords.join
    (join(cust, lambda o: o["c"], lambda o, c: [o["n"], c], name=name)
     .to_stream().to(out, "string", "json"))
    return b


def model(ops: list[Op], left: bool) -> dict[str, Any]:
    """The expected result table after `ops`."""
    orders: dict[str, Any] = {}
    customers: dict[str, Any] = {}
    for kind, key, value in ops:
        table = orders if kind == "order" else customers
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    result = {}
    for key, order in orders.items():
        customer = None if order["c"] is None else customers.get(order["c"])
        if customer is not None or left:
            result[key] = [order["n"], customer]
    return result
