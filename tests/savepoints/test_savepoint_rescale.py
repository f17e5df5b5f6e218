"""Rescale through a savepoint: the input topic grows from 3 to 6 partitions, the store is
re-keyed into 6 partitions with SavepointWriter.repartition_store, the words still in flight
in the repartition topic are spread by key over its 6 partitions; the counts equal the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import NewPartitions
from sp_apps import wordcount
from test_savepoint_fork import lines, live_counts, model, saved_counts

from kstream.savepoint import Savepoint, SavepointError, restore_savepoint
from kstream.testing import KafkaCluster, running_app, wait_until
from kstream.testing._fake_clients import partition_for_key


def consumed(kafka: KafkaCluster, group: str, topic: str) -> int:
    return sum(max(0, o) for o in kafka.committed_offsets(group, topic).values())


def test_rescale_input_and_store_from_three_to_six_partitions(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out = topic_factory(3), topic_factory(3)
    app_id = kafka.unique_name("sp-scale")
    first, second = lines(20_000, 21), lines(5000, 22)
    app = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "state")
    with running_app(app):
        kafka.produce(inp, ((None, line.encode()) for line in first))
        wait_until(lambda: sum(live_counts(app).values()) >= 2000, 120, "part of the input")
        sp = app.savepoint(tmp_path / "sp", stop=True)
    with Savepoint.open(sp) as opened:
        in_flight = sum(p.records for p in opened.manifest.pending)
        assert in_flight and sum(opened.manifest.store("word-counts").counts.values())
        assert [p.partition for p in opened.manifest.pending] == [0, 1, 2]

    kafka.admin.create_partitions([NewPartitions(inp, 6)])[inp].result(30)
    wait_until(lambda: len(kafka.admin.list_topics(inp, timeout=10).topics[inp].partitions)
               == 6, 30, "the input topic to have 6 partitions")
    resumed = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "state")
    with pytest.raises(SavepointError, match="repartition_store"):
        restore_savepoint(sp, resumed)   # 3 store partitions, 6 tasks: refused

    rescaled = tmp_path / "sp6"
    with Savepoint.open(sp, topology=app.topology) as opened:
        opened.writer().repartition_store("word-counts", 6).write(rescaled)
    with Savepoint.open(rescaled, topology=app.topology) as opened:
        assert opened.manifest.store("word-counts").partitions == 6
        for p in range(6):
            for word, _n in opened.entries("word-counts", p):
                assert partition_for_key(word.encode(), 6) == p
    plan = restore_savepoint(rescaled, resumed)
    assert plan.grown_inputs == {inp: (3, 6)}
    assert plan.rehash == {f"{app_id}-word-counts-repartition": 6}
    with running_app(resumed):
        kafka.produce(inp, ((None, line.encode()) for line in second))
        wait_until(lambda: consumed(kafka, app_id, inp) == len(first) + len(second), 120,
                   "the rescaled app to consume all input")
    end = resumed.savepoint(tmp_path / "end", stop=True)
    with Savepoint.open(end, topology=resumed.topology) as opened:
        assert opened.manifest.store("word-counts").partitions == 6
        for p in range(6):   # every word counted by the one task that owns it
            assert {partition_for_key(w.encode(), 6)
                    for w, _ in opened.entries("word-counts", p)} <= {p}
    assert saved_counts(end, resumed.topology) == model(first + second)
