"""Java-compatible partitioning, per-partition tasks and repartition-topic feedback."""

from __future__ import annotations

import pytest

from kstream import Processor, Record, StreamBuilder
from kstream.testing import TopologyTestDriver
from kstream.testing.driver import murmur2, partition_for_key

# Kafka's UtilsTest.testMurmur2 vectors.
MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), MURMUR2_VECTORS.items())
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_for_key_is_to_positive_mod() -> None:
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert murmur2(b"") == 275646681  # empty array: tail-less path
    assert all(0 <= partition_for_key(bytes([i]), 5) < 5 for i in range(256))


class TagPartition(Processor):
    """Marks each value with the task that processed it."""

    def process(self, record: Record) -> None:
        record.value = f"{record.value}@{self.context.task_id}"
        self.context.forward(record)


def test_keyed_and_unkeyed_input_partitioning() -> None:
    b = StreamBuilder()
    b.stream("in", key_serde="string", value_serde="string").process(TagPartition).to(
        "out", key_serde="string", value_serde="string", partitioner=lambda k, v, n: 0)
    with TopologyTestDriver(b, partitions={"in": 3}) as driver:
        src = driver.input_topic("in", "string", "string")
        keys = ["21", "foobar", "abc", "x", "21"]
        for key in keys:
            src.pipe(key, "v")
        for _ in range(4):
            src.pipe(None, "n")
        src.pipe("21", "explicit", partition=2)
        with pytest.raises(ValueError, match="partition 3"):
            src.pipe("k", "v", partition=3)
        records = driver.output_topic("out", "string", "string").read_records_to_list()
    expected = [f"v@0_{partition_for_key(k.encode(), 3)}" for k in keys]
    expected += ["n@0_0", "n@0_1", "n@0_2", "n@0_0", "explicit@0_2"]
    assert [r.value for r in records] == expected


def test_sink_partitions_by_key_bytes_like_the_java_producer() -> None:
    b = StreamBuilder()
    b.stream("in").to("out")
    with TopologyTestDriver(b, partitions={"out": 4}) as driver:
        src = driver.input_topic("in")
        for key in MURMUR2_VECTORS:
            src.pipe(key, b"v")
        src.pipe(None, b"a")
        src.pipe(None, b"b")
        records = driver.output_topic("out").read_records_to_list()
    assert [r.partition for r in records] == [
        *(partition_for_key(k, 4) for k in MURMUR2_VECTORS), 0, 1]
    assert [r.offset for r in records if r.partition == 0] == list(
        range(sum(r.partition == 0 for r in records)))


def test_repartition_topics_feed_back_depth_first() -> None:
    b = StreamBuilder()
    words = "test-app-words-repartition"
    marks = "test-app-marks-repartition"
    (b.stream("in", key_serde="string", value_serde="string")
     .flat_map(lambda k, v: [(w, w) for w in v.split()])
     .to(words, key_serde="string", value_serde="string"))
    by_word = b.stream(words, key_serde="string", value_serde="string").process(TagPartition)
    by_word.to("out", key_serde="string", value_serde="string")
    by_word.flat_map_values(lambda v: [v + "!", v + "?"]).to(
        marks, key_serde="string", value_serde="string")
    (b.stream(marks, key_serde="string", value_serde="string")
     .to("out", key_serde="string", value_serde="string"))
    with TopologyTestDriver(b, partitions={words: 4}) as driver:
        driver.input_topic("in", "string", "string").pipe("line", "a cat", timestamp=9)
        out = driver.output_topic("out", "string", "string").read_records_to_list()
        fed = driver.output_topic(words, "string", "string").read_records_to_list()
    pa, pb = partition_for_key(b"a", 4), partition_for_key(b"cat", 4)
    assert pa != pb
    # Each record's fed-back outputs are processed before its sibling "cat".
    assert [r.value for r in out] == [f"a@1_{pa}", f"a@1_{pa}!", f"a@1_{pa}?",
                                      f"cat@1_{pb}", f"cat@1_{pb}!", f"cat@1_{pb}?"]
    assert all(r.timestamp == 9 for r in out)
    assert [(r.key, r.partition, r.offset) for r in fed] == [("a", pa, 0), ("cat", pb, 0)]
