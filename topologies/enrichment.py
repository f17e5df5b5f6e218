"""Enrichment: orders joined to their customer by foreign key and to a global product
catalogue, without co-partitioning anything.

    enrichment-customers ─► table ("enrichment-customers") ───────────┐
    enrichment-orders ────► table ("enrichment-orders") ─ FK left join by order["customer"]
                                 ("order-customer": subscription/response topics)
                              ─► to_stream ─ drop deletes ─┐
    enrichment-products ──► global table ("products") ─────┴ left join by order["sku"]
                              ─► enrichment-orders-enriched

Orders are a table keyed by order id: an order can be updated (quantity, a different
customer, another product) or deleted. The foreign-key join keeps each order's customer
current: a customer renamed later updates every one of their orders, an order moved to
another customer switches, a deleted customer leaves its orders with `customer: null`
(a left join). The product catalogue is a global table: every instance holds all of it, so
orders need no repartition by SKU; an unknown SKU gives `product: null`.
"""

from __future__ import annotations

import os
import random
from typing import Any

from kstream import EXACTLY_ONCE, App, Record, StreamBuilder, Topology
from kstream.demo import DemoSpec
from serdes import JsonSerde, StringSerde

ORDERS = "enrichment-orders"
CUSTOMERS = "enrichment-customers"
PRODUCTS = "enrichment-products"
ENRICHED = "enrichment-orders-enriched"


def with_customer(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "customer_name": customer and customer["name"],
            "tier": customer and customer["tier"]}


def with_product(order: dict[str, Any], product: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "title": product and product["title"],
            "total": None if product is None else order["qty"] * product["price"]}


def build(orders_topic: str = ORDERS, customers_topic: str = CUSTOMERS,
          products_topic: str = PRODUCTS, enriched_topic: str = ENRICHED) -> Topology:
    """Topics in `kstream demo` order: inputs, then outputs."""
    builder = StreamBuilder()
    customers = builder.table(customers_topic, StringSerde(), JsonSerde(),
                              name="enrichment-customers")
    orders = builder.table(orders_topic, StringSerde(), JsonSerde(), name="enrichment-orders")
    products = builder.global_table(products_topic, StringSerde(), JsonSerde(), name="products")
    (orders.left_join(customers, lambda order: order["customer"], with_customer,
                      name="order-customer")
     .to_stream()
     .filter(lambda _id, order: order is not None)
     .left_join(products, lambda _id, order: order["sku"], with_product)
     .to(enriched_topic, StringSerde(), JsonSerde()))
    return builder.build()


app = App(build(), application_id="enrichment",
          bootstrap_servers=os.environ.get("KSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
          processing_guarantee=EXACTLY_ONCE, auto_create_topics=True, topic_partitions=3)


# -- sample data -------------------------------------------------------------------------------
SampleRecord = tuple[str, str, Any, int]
T0 = 1_700_000_000_000
_TIERS = ("gold", "silver", "bronze")
_PRODUCTS = [("pen", 2), ("notebook", 5), ("lamp", 30), ("chair", 80), ("desk", 250),
             ("mug", 8), ("cable", 12), ("monitor", 180)]


def generate(count: int) -> list[SampleRecord]:
    """The catalogue (sku-0 .. sku-7; orders also name sku-9, which it lacks), count // 10
    customers (at least 5), then order inserts and updates (a third of the updates move the
    order to another customer), some deletes, and a few customer renames and deletes."""
    rng = random.Random(count)
    records: list[SampleRecord] = [
        (PRODUCTS, f"sku-{i}", {"title": title, "price": price}, T0)
        for i, (title, price) in enumerate(_PRODUCTS)]
    customers = [f"cust-{i:03d}" for i in range(max(5, count // 10))]
    records += [(CUSTOMERS, c, {"name": f"Customer {i}", "tier": _TIERS[i % 3]}, T0)
                for i, c in enumerate(customers)]
    orders: dict[str, dict[str, Any]] = {}
    n = 0
    while len(records) < count:
        n += 1
        ts = T0 + n * 1000
        roll = rng.random()
        if roll < 0.03:  # a customer renamed or gone
            c = rng.choice(customers)
            value = None if rng.random() < 0.3 else {"name": f"Renamed {c}", "tier": "gold"}
            records.append((CUSTOMERS, c, value, ts))
        elif orders and roll < 0.35:  # an update (or a delete) of an existing order
            oid = rng.choice(sorted(orders))
            if rng.random() < 0.15:
                del orders[oid]
                records.append((ORDERS, oid, None, ts))
                continue
            order = dict(orders[oid], qty=rng.randint(1, 5))
            if rng.random() < 0.33:
                order["customer"] = rng.choice(customers)
            orders[oid] = order
            records.append((ORDERS, oid, order, ts))
        else:
            oid = f"order-{n:05d}"
            orders[oid] = {"id": oid, "customer": rng.choice(customers),
                           "sku": f"sku-{rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 9])}",
                           "qty": rng.randint(1, 5)}
            records.append((ORDERS, oid, orders[oid], ts))
    return records


def expected(records: list[SampleRecord]) -> dict[str, dict[str, Any]]:
    """What the output topic ends up with per order (its last enriched value): the final
    orders, each with its customer and product as they are at the end."""
    tables: dict[str, dict[str, Any]] = {ORDERS: {}, CUSTOMERS: {}, PRODUCTS: {}}
    for topic, key, value, _ in records:
        if value is None:
            tables[topic].pop(key, None)
        else:
            tables[topic][key] = value
    return {oid: with_product(with_customer(o, tables[CUSTOMERS].get(o["customer"])),
                              tables[PRODUCTS].get(o["sku"]))
            for oid, o in tables[ORDERS].items()}


# -- results -----------------------------------------------------------------------------------
def summarize(outputs: dict[str, list[Record]]) -> str:
    latest: dict[str, Any] = {}
    for r in outputs[ENRICHED]:
        latest[r.key] = r.value
    per_tier: dict[str, list[int]] = {}
    for order in latest.values():
        if order["total"] is not None:
            per_tier.setdefault(order["tier"] or "no customer", []).append(order["total"])
    lines = [f"{len(outputs[ENRICHED])} enriched order updates for {len(latest)} orders; "
             "revenue by customer tier (latest version of each order):"]
    for tier, totals in sorted(per_tier.items(), key=lambda t: (-sum(t[1]), t[0])):
        lines.append(f"  {tier}: {len(totals)} orders, {sum(totals)} total")
    lines.append(f"  orders whose customer is gone: "
                 f"{sum(1 for o in latest.values() if o['customer_name'] is None)}")
    lines.append(f"  orders of a product missing from the catalogue: "
                 f"{sum(1 for o in latest.values() if o['title'] is None)}")
    return "\n".join(lines)


DEMO = DemoSpec(build=build, inputs={ORDERS: 3, CUSTOMERS: 2, PRODUCTS: 2},
                input_serdes={ORDERS: (StringSerde(), JsonSerde()),
                              CUSTOMERS: (StringSerde(), JsonSerde()),
                              PRODUCTS: (StringSerde(), JsonSerde())},
                outputs={ENRICHED: (StringSerde(), JsonSerde())},
                generate=generate, summarize=summarize, default_records=1000,
                settings={"processing_guarantee": EXACTLY_ONCE})
