"""The driver runs the engine's committers and bad-record handling over in-memory clients:
what readers see per guarantee, how a bad record stops it, how Kafka errors are recovered."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from kstream import RecordError, StreamBuilder
from kstream.config import ConfigError
from kstream.errors import FatalError, MissingTopicsError
from kstream.testing import TopologyTestDriver
from kstream.testing._fake_clients import ABORTED


def _check(v: dict) -> dict:  # type: ignore[type-arg]
    if v.get("copy") and v.get("poison"):
        raise ValueError(f"poison {v['id']}")
    return v


def _builder() -> StreamBuilder:
    """A fan-out (each record and its copy go to "out"; a poison record fails on its copy,
    after the original was sent) and a count per user through a repartition topic."""
    b = StreamBuilder()
    events = b.stream("in", key_serde="string", value_serde="json")
    (events.flat_map_values(lambda v: [v, {**v, "copy": True}])
     .map_values(_check)
     .map_values(lambda v: f"{v['id']}{'+' if v.get('copy') else ''}")
     .to("out", key_serde="string", value_serde="string"))
    (events.group_by(lambda _k, v: v["user"], key_serde="string", name="by-user")
     .count("per-user")
     .to_stream().to("counts", key_serde="string", value_serde="int64"))
    return b


def _pipe(driver: TopologyTestDriver, ids: range, poison: int | None = None) -> None:
    src = driver.input_topic("in", "string", "json")
    for i in ids:
        src.pipe(f"k{i}", {"id": i, "user": f"u{i % 2}", "poison": i == poison}, 1000 + i)


def _outputs(driver: TopologyTestDriver) -> tuple[list[str], dict[str, int]]:
    out = driver.output_topic("out", "string", "string").read_values_to_list()
    counts = driver.output_topic("counts", "string", "int64").read_key_values_to_dict()
    return out, counts


def _expected_out(ids: list[int]) -> list[str]:
    return [s for i in ids for s in (str(i), f"{i}+")]


def test_exactly_once_readers_see_only_committed_records() -> None:
    with TopologyTestDriver(_builder(), commit_every=None) as driver:
        _pipe(driver, range(3))
        out = driver.output_topic("out", "string", "string")
        assert out.is_empty()  # read_committed: the transaction is open
        assert driver.committed_offsets("in") == {0: -1001}
        driver.commit()
        assert out.read_values_to_list() == _expected_out([0, 1, 2])
        assert driver.committed_offsets("in") == {0: 3}
        rep = "test-app-per-user-repartition"
        assert driver.committed_offsets(rep) == {0: 3}  # fed-back records are consumed too


@pytest.mark.parametrize("guarantee", ["at_least_once", "at_most_once"])
def test_other_guarantees_show_everything_sent(guarantee: str) -> None:
    with TopologyTestDriver(_builder(), processing_guarantee=guarantee,
                            commit_every=None) as driver:
        _pipe(driver, range(2))
        assert driver.output_topic("out", "string", "string").read_values_to_list() == \
            _expected_out([0, 1])
        driver.commit()
        assert driver.committed_offsets("in") == {0: 2}


def test_fail_under_exactly_once_aborts_replays_commits_what_came_before_and_stops() -> None:
    with TopologyTestDriver(_builder(), commit_every=None) as driver:
        with pytest.raises(RecordError) as info:
            _pipe(driver, range(6), poison=4)
        err = info.value
        assert (err.topic, err.partition, err.offset, err.stage) == ("in", 0, 4, "process")
        out, counts = _outputs(driver)
        # Records 0-3 exactly once; the poison record's partial output ("4") was aborted.
        assert out == _expected_out([0, 1, 2, 3])
        assert counts == {"u0": 2, "u1": 2}
        assert driver.committed_offsets("in") == {0: 4}
        assert driver.get_store("per-user").get("u0") == 2
        first_attempt = driver.kafka.read("out", 0, "read_uncommitted")[:9]
        assert {m.state for m in first_attempt} == {ABORTED}  # 0-3 and "4", then the replay
        assert driver.stats.aborts == 1 and driver.stats.errors == 1
        with pytest.raises(RuntimeError, match=r"stopped after a failed record at in\[0\]@4"):
            _pipe(driver, range(6, 7))
        with pytest.raises(RuntimeError, match="stopped"):
            driver.commit()


def test_fail_at_the_first_record_of_an_interval_commits_the_interval_before() -> None:
    with TopologyTestDriver(_builder(), commit_every=2) as driver:
        with pytest.raises(RecordError):
            _pipe(driver, range(5), poison=2)  # 0, 1 committed; 2 fails first in its interval
        out, counts = _outputs(driver)
        assert out == _expected_out([0, 1]) and counts == {"u0": 1, "u1": 1}
        assert driver.committed_offsets("in") == {0: 2}


def test_fail_under_at_least_once_replays_and_may_duplicate_like_a_broker() -> None:
    with TopologyTestDriver(_builder(), processing_guarantee="at_least_once",
                            commit_every=None) as driver:
        with pytest.raises(RecordError):
            _pipe(driver, range(3), poison=2)
        out, counts = _outputs(driver)
        # Sent records are never taken back: the first attempt (0, 1 and the partial "2") and
        # the replay of 0 and 1.
        assert out == [*_expected_out([0, 1]), "2", *_expected_out([0, 1])]
        assert counts == {"u0": 1, "u1": 1}  # the changelog and store hold committed state
        assert driver.committed_offsets("in") == {0: 2}


def test_fail_under_at_most_once_commits_up_to_the_record_without_replay() -> None:
    with TopologyTestDriver(_builder(), processing_guarantee="at_most_once",
                            commit_every=None) as driver:
        with pytest.raises(RecordError):
            _pipe(driver, range(3), poison=1)
        out, _ = _outputs(driver)
        assert out == [*_expected_out([0]), "1"]  # the partial output stays, nothing repeats
        assert driver.committed_offsets("in") == {0: 1}
        with pytest.raises(RuntimeError, match="stopped"):
            _pipe(driver, range(3, 4))


def test_dead_letter_keeps_the_partial_output_and_goes_on() -> None:
    with TopologyTestDriver(_builder(), error_policy="dead_letter") as driver:
        _pipe(driver, range(4), poison=1)
        out, counts = _outputs(driver)
        assert out == [*_expected_out([0]), "1", *_expected_out([2, 3])]
        assert counts == {"u0": 2, "u1": 1}  # the poison record never reached the count
        dlq = driver.output_topic("test-app-dlq", "string", "json").read_records_to_list()
        assert [(r.key, r.value["id"]) for r in dlq] == [("k1", 1)]
        assert dict(dlq[0].headers or [])["kstream.error.offset"] == b"1"
        assert driver.committed_offsets("in") == {0: 4}
        assert driver.stats.dead_lettered == 1


def test_fail_on_a_fed_back_record_stops_at_its_offset() -> None:
    b = StreamBuilder()
    (b.stream("in", key_serde="string", value_serde="json")
     .group_by(lambda _k, v: v["user"], key_serde="string", name="by-user")
     .aggregate(lambda: 0, lambda _k, v, agg: agg + 10 // v["n"], "sums")
     .to_stream().to("sums", key_serde="string", value_serde="int64"))
    with TopologyTestDriver(b, commit_every=None) as driver:
        src = driver.input_topic("in", "string", "json")
        src.pipe("a", {"user": "x", "n": 1})
        src.pipe("b", {"user": "x", "n": 2})
        with pytest.raises(RecordError) as info:
            src.pipe("c", {"user": "x", "n": 0})
        rep = "test-app-sums-repartition"
        assert (info.value.topic, info.value.stage) == (rep, "process")
        assert driver.output_topic("sums", "string", "int64").read_values_to_list() == [10, 15]
        # The input record is done (its output is the repartitioned record); the
        # repartitioned record is where a restart begins.
        assert driver.committed_offsets("in") == {0: 3}
        committed = driver.committed_offsets(rep)[0]
        failed = driver.kafka.read(rep, 0)[-1]
        assert committed == failed.offset() and failed.value() == b'{"user":"x","n":0}'


def test_an_abortable_kafka_error_is_recovered_like_the_engine() -> None:
    with TopologyTestDriver(_builder(), commit_every=None) as driver:
        _pipe(driver, range(2))
        driver.kafka.faults.fail("commit_transaction",
                                 KafkaError(KafkaError._STATE, txn_requires_abort=True))
        driver.commit()  # aborts, rewinds, replays the two records, commits
        _pipe(driver, range(2, 3))
        driver.commit()
        out, counts = _outputs(driver)
        assert out == _expected_out([0, 1, 2])
        assert counts == {"u0": 2, "u1": 1}
        assert driver.get_store("per-user").get("u0") == 2  # no double count
        assert (driver.stats.recoveries, driver.stats.aborts) == (1, 1)


@pytest.mark.parametrize("error", [
    KafkaError(KafkaError.PRODUCER_FENCED, fatal=True),
    KafkaError(KafkaError._TIMED_OUT, retriable=True),  # not resumed: a new producer takes over
], ids=["fenced", "timed-out"])
def test_a_producer_that_cannot_go_on_is_replaced_and_the_interval_redone(
        error: KafkaError) -> None:
    with TopologyTestDriver(_builder()) as driver:
        _pipe(driver, range(1))
        first = driver._producer
        driver.kafka.faults.fail("send_offsets_to_transaction", error)
        _pipe(driver, range(1, 3))
        assert driver._producer is not first
        out, counts = _outputs(driver)
        assert out == _expected_out([0, 1, 2]) and counts == {"u0": 2, "u1": 1}
        assert driver.committed_offsets("in") == {0: 3}


def test_a_fatal_kafka_error_stops_the_driver() -> None:
    with TopologyTestDriver(_builder()) as driver:
        _pipe(driver, range(1))
        driver.kafka.faults.fail("commit_transaction",
                                 KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED))
        with pytest.raises(FatalError, match="commit_transaction"):
            _pipe(driver, range(1, 2))
        assert driver.output_topic("out", "string", "string").read_values_to_list() == \
            _expected_out([0])
        with pytest.raises(RuntimeError, match="stopped after an error"):
            _pipe(driver, range(2, 3))


def test_output_topic_names_must_be_written_by_the_topology() -> None:
    with TopologyTestDriver(_builder(), "shop", error_policy="dead_letter") as driver:
        with pytest.raises(ValueError) as info:
            driver.output_topic("cuonts")
        message = str(info.value)
        for topic in ("out", "counts", "shop-per-user-repartition", "shop-per-user-changelog",
                      "shop-dlq"):
            assert repr(topic) in message


def test_start_up_checks_are_the_engines() -> None:
    b = StreamBuilder()
    table = b.table("prices", key_serde="string", value_serde="json", name="prices")
    (b.stream("orders", key_serde="string", value_serde="json")
     .join(table, lambda o, p: {**o, **p}).to("priced"))
    with pytest.raises(MissingTopicsError, match="co-partitioning"):
        TopologyTestDriver(b, partitions={"orders": 2, "prices": 1})
    with pytest.raises(MissingTopicsError, match="has 3 partitions but its inputs have 2"):
        TopologyTestDriver(_builder(), partitions={"in": 2, "test-app-per-user-repartition": 3})
    with pytest.raises(ConfigError, match="processing_guarantee"):
        TopologyTestDriver(_builder(), processing_guarantee="twice")
    with TopologyTestDriver(b, partitions={"orders": 2, "prices": 2}) as driver:
        assert driver.partition_count("test-app-prices-changelog") == 2
