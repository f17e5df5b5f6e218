"""A poison record goes to the dead-letter topic or stops the app; neighbours are exact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from kstream import App, RecordError, StreamBuilder
from kstream.testing import KafkaCluster, running_app, wait_until
from serdes import JsonSerde, StringSerde

RECORDS = 2000
POISON_ID = 1001  # partition 1, offset 500
BAD_JSON_ID = 600  # partition 0, offset 300: not even JSON


def produce_with_poison(kafka: KafkaCluster, topic: str) -> None:
    for partition in (0, 1):
        records = []
        for i in range(partition, RECORDS, 2):
            value = b"{not json" if i == BAD_JSON_ID else orjson.dumps(
                {"id": i, "poison": i == POISON_ID})
            records.append((str(i).encode(), value))
        kafka.produce(topic, records, partition=partition)


def build(inp: str, out: str) -> StreamBuilder:
    def check(v: dict) -> dict:  # type: ignore[type-arg]
        if v["poison"]:
            raise ValueError(f"poison {v['id']}")
        return v

    b = StreamBuilder()
    (b.stream(inp, key_serde=StringSerde(), value_serde=JsonSerde())
     .flat_map_values(lambda v: [v, v] if v["id"] % 2 else [v])  # outputs before the failure
     .map_values(check)
     .map_values(lambda v: str(v["id"]))
     .to(out, value_serde=StringSerde()))
    return b


def expected(ids: list[int]) -> Counter[str]:
    return Counter(str(i) for i in ids for _ in range(2 if i % 2 else 1))


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_poison_goes_to_dead_letter_topic(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                          tmp_path: Path, guarantee: str) -> None:
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    produce_with_poison(kafka, inp)
    app_id = kafka.unique_name("dlq")
    app = App(build(inp, out), application_id=app_id, error_policy="dead_letter",
              bootstrap_servers=kafka.bootstrap_servers, state_dir=tmp_path,
              processing_guarantee=guarantee)
    good = [i for i in range(RECORDS) if i not in (POISON_ID, BAD_JSON_ID)]
    want = expected(good)
    with running_app(app, join_timeout=30) as runner:
        records = kafka.read_topic(out, min_count=sum(want.values()), timeout=60)
        wait_until(lambda: sum(max(0, o) for o in kafka.committed_offsets(app_id, inp).values())
                   == RECORDS, 30, "all offsets committed")
    assert runner.error is None
    assert Counter(r.value.decode() for r in records) == want  # type: ignore[union-attr]

    dlq = kafka.read_topic(f"{app_id}-dlq", min_count=2, timeout=30)
    assert len(dlq) == 2
    by_offset = {dict(r.headers)["kstream.error.offset"]: r for r in dlq}
    bad_json, poison = by_offset[b"300"], by_offset[b"500"]
    assert bad_json.value == b"{not json"
    headers = dict(bad_json.headers)
    assert headers["kstream.error.topic"] == inp.encode()
    assert headers["kstream.error.partition"] == b"0"
    assert headers["kstream.error.stage"] == b"deserialize"
    assert orjson.loads(poison.value)["id"] == POISON_ID  # type: ignore[arg-type]
    headers = dict(poison.headers)
    assert headers["kstream.error.partition"] == b"1"
    assert headers["kstream.error.stage"] == b"process"
    assert headers["kstream.error.exception"] == b"ValueError"
    assert b"poison 1001" in headers["kstream.error.message"]


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once", "at_most_once"])
def test_poison_stops_the_app_after_committing_earlier_records(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        guarantee: str) -> None:
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    produce_with_poison(kafka, inp)
    app_id = kafka.unique_name("fail")
    app = App(build(inp, out), application_id=app_id, error_policy="fail",
              bootstrap_servers=kafka.bootstrap_servers, state_dir=tmp_path,
              processing_guarantee=guarantee, batch_size=50)
    with running_app(app, expect_error=True) as runner:  # the app stops itself, raising
        runner.thread.join(90)
        assert not runner.thread.is_alive()
    err = runner.error
    assert isinstance(err, RecordError), repr(err)
    assert err.topic == inp
    assert (err.partition, err.offset) in ((0, 300), (1, 500))
    assert f"{inp}[{err.partition}]@{err.offset}" in str(err)

    committed = kafka.committed_offsets(app_id, inp)
    assert committed[err.partition] == err.offset, committed  # stops right at the bad record
    # Everything before the committed positions was processed; nothing at or after the bad
    # record in its partition was.
    done = [i for i in range(RECORDS) if i // 2 < committed[i % 2]
            and i not in (POISON_ID, BAD_JSON_ID)]
    got = Counter(r.value.decode() for r in kafka.read_topic(out, timeout=30))  # type: ignore[union-attr]
    want = expected(done)
    if guarantee == "exactly_once":
        assert got == want
    else:
        assert set(got) >= set(want) if guarantee == "at_least_once" else set(got) <= set(want)
        bad = str(POISON_ID if err.partition == 1 else BAD_JSON_ID)
        assert bad not in got or guarantee == "at_least_once"
