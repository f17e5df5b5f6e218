"""Table re-grouping (`Table.group_by(...).count/reduce/aggregate`): an update moves the old
value out of its group and the new one into its group, through the repartition topic."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream import StreamBuilder
from kstream.dsl._change import Change, ChangeSerde
from kstream.testing import TopologyTestDriver
from serdes import Int64Serde, JsonSerde, StringSerde


def accounts_per_city() -> StreamBuilder:
    b = StreamBuilder()
    accounts = b.table("accounts", StringSerde(), JsonSerde(), name="accounts",
                       backend="memory")
    by_city = accounts.group_by(lambda _id, acct: (acct["city"], acct), key_serde=StringSerde())
    by_city.count("per-city", backend="memory").to_stream().to(
        "per-city", StringSerde(), Int64Serde())
    by_city.aggregate(lambda: 0, lambda _c, acct, total: total + acct["balance"],
                      lambda _c, acct, total: total - acct["balance"], "balance-per-city",
                      value_serde="int64", backend="memory").to_stream().to(
        "balances", StringSerde(), Int64Serde())
    return b


def test_an_account_moving_city_leaves_its_old_city() -> None:
    with TopologyTestDriver(accounts_per_city()) as driver:
        accounts = driver.input_topic("accounts", StringSerde(), JsonSerde())
        counts = driver.output_topic("per-city", StringSerde(), Int64Serde())
        balances = driver.output_topic("balances", StringSerde(), Int64Serde())
        accounts.pipe("a1", {"city": "Paris", "balance": 10})
        accounts.pipe("a2", {"city": "Paris", "balance": 5})
        accounts.pipe("a1", {"city": "Rome", "balance": 10})   # moves
        accounts.pipe("a2", {"city": "Paris", "balance": 7})   # same city: one change
        accounts.pipe("a1", None)                               # closed
        assert counts.read_key_values_to_list() == [
            ("Paris", 1), ("Paris", 2), ("Paris", 1), ("Rome", 1), ("Paris", 1), ("Rome", 0)]
        assert balances.read_key_values_to_list() == [
            ("Paris", 10), ("Paris", 15), ("Paris", 5), ("Rome", 10), ("Paris", 7), ("Rome", 0)]
        assert driver.get_store("per-city").get("Paris") == 1


def test_reduce_with_a_subtractor() -> None:
    b = StreamBuilder()
    (b.table("t", StringSerde(), JsonSerde(), name="t", backend="memory")
     .group_by(lambda _k, v: (v["g"], v["n"]), key_serde=StringSerde())
     .reduce(lambda agg, n: agg + n, lambda agg, n: agg - n, "sums", backend="memory")
     .to_stream().to("sums", StringSerde(), JsonSerde()))
    with TopologyTestDriver(b) as driver:
        t = driver.input_topic("t", StringSerde(), JsonSerde())
        for key, value in (("x", {"g": "A", "n": 3}), ("y", {"g": "A", "n": 4}),
                           ("x", {"g": "B", "n": 3}), ("y", None)):
            t.pipe(key, value)
        out = driver.output_topic("sums", StringSerde(), JsonSerde())
        assert out.read_key_values_to_list() == [("A", 3), ("A", 7), ("A", 4), ("B", 3),
                                                 ("A", 0)]


def test_change_serde_round_trips() -> None:
    serde = ChangeSerde(JsonSerde())
    for change in (Change(None, 1), Change({"a": 1}, None), Change([1], "x"), Change(None, None)):
        assert serde.deserialize(serde.serialize(change)) == change


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3", "a4"]),
                          st.one_of(st.none(), st.tuples(st.sampled_from(["P", "R", "L"]),
                                                         st.integers(0, 50)))),
                min_size=1, max_size=40))
def test_group_totals_match_the_table(updates: list[tuple[str, Any]]) -> None:
    """After every update, the groups' latest counts and balances equal a recount of the
    table as it stands (groups that were emptied stay at 0, as Kafka Streams)."""
    with TopologyTestDriver(accounts_per_city()) as driver:
        accounts = driver.input_topic("accounts", StringSerde(), JsonSerde())
        counts = driver.output_topic("per-city", StringSerde(), Int64Serde())
        balances = driver.output_topic("balances", StringSerde(), Int64Serde())
        table: dict[str, tuple[str, int]] = {}
        seen: set[str] = set()
        latest_counts: dict[str, int] = {}
        latest_balances: dict[str, int] = {}
        for account, value in updates:
            if value is None:
                accounts.pipe(account, None)
                table.pop(account, None)
            else:
                accounts.pipe(account, {"city": value[0], "balance": value[1]})
                table[account] = value
                seen.add(value[0])
            latest_counts.update(counts.read_key_values_to_list())
            latest_balances.update(balances.read_key_values_to_list())
            assert latest_counts == {c: sum(1 for v in table.values() if v[0] == c)
                                     for c in seen}
            assert latest_balances == {c: sum(v[1] for v in table.values() if v[0] == c)
                                       for c in seen}
