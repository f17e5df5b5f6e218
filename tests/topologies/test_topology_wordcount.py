"""wordcount: exact outputs in the driver, and the same outputs on the real broker."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from topology_helpers import run_demo

from kstream import App
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app
from serdes import Int64Serde, StringSerde
from topologies import wordcount

LINES = ["The fox", "the DOG and the fox", "", "fox's den"]


def test_wordcount_in_the_driver() -> None:
    with TopologyTestDriver(wordcount.build(), partitions={wordcount.INPUT: 3}) as driver:
        lines = driver.input_topic(wordcount.INPUT, StringSerde(), StringSerde())
        for line in LINES:
            lines.pipe(None, line)
        out = driver.output_topic(wordcount.OUTPUT, StringSerde(), Int64Serde())
        assert out.read_key_values_to_list() == [
            ("the", 1), ("fox", 1), ("the", 2), ("dog", 1), ("and", 1), ("the", 3), ("fox", 2),
            ("fox's", 1), ("den", 1)]
        assert driver.get_store("word-counts", partition=0) is not None


def test_wordcount_on_kafka_matches_the_driver(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                               tmp_path: Path) -> None:
    sample = [line for _, _, line, _ in wordcount.generate(500)]
    with TopologyTestDriver(wordcount.build(), partitions={wordcount.INPUT: 3}) as driver:
        pipe = driver.input_topic(wordcount.INPUT, StringSerde(), StringSerde())
        for line in sample:
            pipe.pipe(None, line)
        expected = driver.output_topic(wordcount.OUTPUT, StringSerde(), Int64Serde())
        want = Counter(expected.read_key_values_to_list())

    inp, out = topic_factory(partitions=3), topic_factory(partitions=3)
    kafka.produce(inp, ((None, line.encode()) for line in sample))
    app = App(wordcount.build(inp, out), application_id=kafka.unique_name("wc"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        records = kafka.read_topic(out, min_count=sum(want.values()), timeout=90)
    got = Counter((r.key.decode(), Int64Serde().deserialize(r.value)) for r in records)  # type: ignore[union-attr]
    assert got == want


def test_demo_command_prints_results(kafka: KafkaCluster) -> None:
    """`kstream demo wordcount` as a new user runs it (against the session's broker)."""
    proc = run_demo(kafka, "wordcount", 300)
    assert "produced 300 sample records" in proc.stdout
    assert "top 10:" in proc.stdout
    assert "the" in proc.stdout.split("top 10:")[1]
