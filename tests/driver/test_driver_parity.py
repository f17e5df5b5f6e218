"""Driver and broker agree: the same topology and input give the same committed outputs, the
same committed input offsets and the same stop behaviour, under each error policy; a topology
the engine refuses at start the driver refuses with the same error.

Real broker (the `kafka` fixture); the app runs in a thread, waits use deadlines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from kstream import App, RecordError, StreamBuilder
from kstream.errors import MissingTopicsError
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from serdes import Int64Serde, JsonSerde, StringSerde

RECORDS = 20
POISON = 11  # input offset 11: fails on its copy, after the original went out
USERS = 3


def _check(v: dict[str, Any]) -> dict[str, Any]:
    if v.get("copy") and v["poison"]:
        raise ValueError(f"poison {v['id']}")
    return v


def build(inp: str, out: str, counts: str) -> StreamBuilder:
    """A stateful count per user (key), then a fan-out: each record and a copy to `out`. The
    poison record has updated its count and sent its original before its copy raises."""
    b = StreamBuilder()
    events = b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
    (events.group_by_key().count("per-user")
     .to_stream().to(counts, key_serde=StringSerde(), value_serde=Int64Serde()))
    (events.flat_map_values(lambda v: [v, {**v, "copy": True}])
     .map_values(_check)
     .map_values(lambda v: f"{v['id']}{'+' if v.get('copy') else ''}")
     .to(out, key_serde=StringSerde(), value_serde=StringSerde()))
    return b


def inputs() -> list[tuple[bytes, bytes, int]]:
    return [(f"u{i % USERS}".encode(),
             orjson.dumps({"id": i, "user": f"u{i % USERS}", "poison": i == POISON}),
             1_000 + i) for i in range(RECORDS)]


Observed = dict[str, Any]


def observe_driver(policy: str, names: tuple[str, str, str], app_id: str,
                   commit_every: int | None) -> Observed:
    inp, out, counts = names
    with TopologyTestDriver(build(*names), app_id, error_policy=policy,
                            processing_guarantee="exactly_once",
                            commit_every=commit_every) as driver:
        src = driver.input_topic(inp)
        error: RecordError | None = None
        try:
            for key, value, ts in inputs():
                src.pipe(key, value, ts)
        except RecordError as exc:
            error = exc
        still_running = driver.stopped is None
        if still_running:
            driver.commit()  # as the engine's commit interval would by now
        return {
            "out": sorted(driver.output_topic(out, StringSerde(), StringSerde())
                          .read_values_to_list()),
            "counts": sorted(driver.output_topic(counts, StringSerde(), Int64Serde())
                             .read_key_values_to_list()),
            "dlq": [(r.key, r.value, sorted(r.headers or []))
                    for r in driver.output_topic(f"{app_id}-dlq").read_records_to_list()]
            if policy == "dead_letter" else [],
            "committed": driver.committed_offsets(inp),
            "error": _describe(error),
            "running": still_running,
        }


def observe_broker(kafka: KafkaCluster, policy: str, names: tuple[str, str, str], app_id: str,
                   state_dir: Path) -> Observed:
    inp, out, counts = names
    kafka.produce(inp, inputs(), partition=0)
    app = App(build(*names), application_id=app_id, bootstrap_servers=kafka.bootstrap_servers,
              state_dir=state_dir, processing_guarantee="exactly_once", error_policy=policy)
    with running_app(app, join_timeout=60, expect_error=policy == "fail") as run:
        if policy == "fail":
            wait_until(lambda: not run.alive(), 120, "the app to stop at the poison record")
        else:
            wait_until(lambda: kafka.committed_offsets(app_id, inp)[0] == RECORDS, 120,
                       "every input offset committed")
        running = run.alive()
    error = run.error
    if policy == "fail":
        assert isinstance(error, RecordError), repr(error)
    strings, ints = StringSerde(), Int64Serde()
    return {
        "out": sorted(strings.deserialize(r.value) for r in kafka.read_topic(out)),
        "counts": sorted((strings.deserialize(r.key), ints.deserialize(r.value))
                         for r in kafka.read_topic(counts)),
        "dlq": [(r.key, r.value, sorted(r.headers)) for r in kafka.read_topic(f"{app_id}-dlq")]
        if policy == "dead_letter" else [],
        "committed": kafka.committed_offsets(app_id, inp),
        "error": _describe(error),
        "running": running,
    }


def _describe(error: BaseException | None) -> tuple[str, int, int, str, str] | None:
    if not isinstance(error, RecordError):
        return None
    return (error.topic, error.partition, error.offset, error.stage, str(error))


def expected(policy: str) -> tuple[list[str], dict[str, int]]:
    done = range(POISON) if policy == "fail" else [i for i in range(RECORDS) if i != POISON]
    out = [s for i in done for s in (str(i), f"{i}+")]
    counted = list(done)
    if policy == "dead_letter":
        # The poison record's effects before it raised stay with its dead-letter record.
        out.append(str(POISON))
        counted.append(POISON)
    totals: dict[str, int] = {}
    for i in counted:
        totals[f"u{i % USERS}"] = totals.get(f"u{i % USERS}", 0) + 1
    return sorted(out), totals


@pytest.mark.parametrize("policy", ["fail", "dead_letter"])
def test_driver_and_broker_agree_on_a_poison_record(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path, policy: str) -> None:
    names = (topic_factory(prefix="in"), topic_factory(prefix="out"),
             topic_factory(prefix="counts"))
    app_id = kafka.unique_name("parity")
    broker = observe_broker(kafka, policy, names, app_id, tmp_path / "state")
    for commit_every in (1, 4, None):
        driver = observe_driver(policy, names, app_id, commit_every)
        assert driver == broker, f"commit_every={commit_every}"

    # And both are right, not just equal.
    want_out, want_totals = expected(policy)
    assert broker["out"] == want_out
    # Count updates per user: 1..n, each exactly once.
    assert broker["counts"] == sorted((user, n) for user, total in want_totals.items()
                                      for n in range(1, total + 1))
    if policy == "fail":
        assert broker["error"][:4] == (names[0], 0, POISON, "process")
        assert broker["committed"] == {0: POISON}  # stopped right at the poison record
        assert broker["running"] is False
    else:
        assert broker["error"] is None and broker["running"] is True
        assert broker["committed"] == {0: RECORDS}
        assert len(broker["dlq"]) == 1
        key, value, headers = broker["dlq"][0]
        assert (key, orjson.loads(value)["id"]) == (f"u{POISON % USERS}".encode(), POISON)
        assert dict(headers)["kstream.error.offset"] == str(POISON).encode()


def test_a_topology_the_engine_refuses_the_driver_refuses(kafka: KafkaCluster,  # type: ignore[no-untyped-def]
                                                          topic_factory, tmp_path: Path) -> None:
    orders, prices = topic_factory(partitions=2, prefix="orders"), topic_factory(prefix="prices")
    out = topic_factory(prefix="priced")

    def joined() -> StreamBuilder:
        b = StreamBuilder()
        table = b.table(prices, key_serde=StringSerde(), value_serde=JsonSerde(), name="prices")
        (b.stream(orders, key_serde=StringSerde(), value_serde=JsonSerde())
         .join(table, lambda o, p: {**o, **p})
         .to(out, key_serde=StringSerde(), value_serde=JsonSerde()))
        return b

    app_id = kafka.unique_name("refused")
    with pytest.raises(MissingTopicsError) as in_driver:
        TopologyTestDriver(joined(), app_id, partitions={orders: 2, prices: 1})
    app = App(joined(), application_id=app_id, bootstrap_servers=kafka.bootstrap_servers,
              state_dir=tmp_path / "state")
    with pytest.raises(MissingTopicsError) as in_app:
        app.run(install_signal_handlers=False)
    assert str(in_driver.value) == str(in_app.value)
    assert "co-partitioning" in str(in_app.value)
