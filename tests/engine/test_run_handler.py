"""A task's run handler (kstream.runtime.fusion.RunHandler), without a broker.

The engine hands a task a whole run of one partition's records from a consumed batch; the
handler must stop exactly where the run ends (another partition or topic, an error event),
name the failing record's index, count the outputs it sent before any failure, and behave the
same fused and unfused. The TopologyTestDriver only ever hands it runs of one record, so these
cases are covered here, with real confluent-kafka Messages and the engine's collector.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from kstream import StreamBuilder
from kstream.errors import InternalError, RecordError
from kstream.processor import Processor
from kstream.record import Record
from kstream.runtime.collector import KafkaRecordCollector
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import Task, build_task
from serdes import StringSerde


class RecordingProducer:
    """What KafkaRecordCollector calls: produce(topic, value, key, partition, callback,
    on_delivery, timestamp, headers), positionally."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, _partition: int,
                _callback: Any, _on_delivery: Any, timestamp: int, _headers: Any) -> None:
        self.sent.append((topic, key, value, timestamp))

    def poll(self, _timeout: float = 0) -> int:
        return 0


def _msg(partition: int, offset: int, key: bytes | None, value: bytes,
         topic: str = "in") -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=value,
                   timestamp=(1, 1_000 + offset))


def _error_event() -> Message:
    return Message(topic="in", partition=0, error=KafkaError(KafkaError._PARTITION_EOF))


def _task(builder: StreamBuilder, fusion: bool) -> tuple[Task, RecordingProducer, EngineStats]:
    producer, stats = RecordingProducer(), EngineStats()
    collector = KafkaRecordCollector(producer, stats, lambda _t: 1,  # type: ignore[arg-type]
                                     transactional=True)
    topology = builder.build().bind("run-handler-test")
    task = build_task("run-handler-test", topology, topology.subtopologies()[0], 0, collector,
                      Path(tempfile.mkdtemp(prefix="kstream-run-")), fusion=fusion)
    return task, producer, stats


def _upper_pipeline() -> StreamBuilder:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), StringSerde())
     .filter(lambda _k, v: v != "drop")
     .map_values(lambda v: 1 / 0 if v == "boom" else v.upper())
     .to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    return b


@pytest.mark.parametrize("fusion", [True, False])
def test_a_run_stops_at_another_partition_an_error_event_or_another_topic(fusion: bool) -> None:
    task, producer, stats = _task(_upper_pipeline(), fusion)
    batch = [_msg(0, 0, b"a", b"x"), _msg(0, 1, b"b", b"drop"), _msg(0, 2, b"c", b"y"),
             _msg(1, 0, b"d", b"z"),          # another partition
             _msg(0, 3, b"e", b"w"), _error_event(),
             _msg(0, 4, None, b"v"), _msg(0, 0, b"f", b"u", topic="other")]
    run = task.run_handler("in")
    assert run(batch, 0) == 3
    assert run(batch, 4) == 5
    assert run(batch, 6) == 7
    assert producer.sent == [("out", b"a", b"X", 1_000), ("out", b"c", b"Y", 1_002),
                             ("out", b"e", b"W", 1_003), ("out", None, b"V", 1_004)]
    assert stats.records_out == 4
    assert task.collector.last_timestamp == 1_004  # type: ignore[attr-defined]
    assert task.stream_time == 1_004


@pytest.mark.parametrize("fusion", [True, False])
def test_a_failing_record_names_its_batch_index_and_earlier_outputs_still_count(
        fusion: bool) -> None:
    task, producer, stats = _task(_upper_pipeline(), fusion)
    batch = [_msg(1, 7, b"z", b"z"), _msg(0, 10, b"a", b"x"), _msg(0, 11, b"b", b"y"),
             _msg(0, 12, b"c", b"boom"), _msg(0, 13, b"d", b"never")]
    with pytest.raises(RecordError) as raised:
        task.run_handler("in")(batch, 1)
    assert raised.value.batch_index == 3
    assert (raised.value.partition, raised.value.offset) == (0, 12)
    assert isinstance(raised.value.cause, ZeroDivisionError)
    assert [s[1] for s in producer.sent] == [b"a", b"b"]
    assert stats.records_out == 2
    assert task.collector.last_timestamp == 1_011  # type: ignore[attr-defined]


@pytest.mark.parametrize("fusion", [True, False])
def test_an_undecodable_record_names_its_batch_index(fusion: bool) -> None:
    task, _producer, _stats = _task(_upper_pipeline(), fusion)
    batch = [_msg(0, 0, b"a", b"x"), _msg(0, 1, b"\xff", b"y")]
    with pytest.raises(RecordError) as raised:
        task.run_handler("in")(batch, 0)
    assert (raised.value.batch_index, raised.value.stage, raised.value.offset) == \
        (1, "deserialize", 1)


def test_the_one_record_handler_refuses_a_record_of_another_partition() -> None:
    task, producer, _stats = _task(_upper_pipeline(), True)
    with pytest.raises(InternalError):
        task.handler("in")(_msg(3, 0, b"a", b"x"))  # type: ignore[arg-type]
    assert producer.sent == []


class _KeepOffsets(Processor):
    seen: list[int | None] = []

    def process(self, record: Record) -> None:
        _KeepOffsets.seen.append(record.offset)
        self.context.forward(record)


def _sent(builder: StreamBuilder, fusion: bool, topic: str,
          batch: list[Message]) -> list[tuple[bytes | None, bytes | None]]:
    task, producer, _stats = _task(builder, fusion)
    assert task.run_handler(topic)(batch, 0) == len(batch)
    return [(key, value) for _topic, key, value, _ts in producer.sent]


@pytest.mark.parametrize("fusion", [True, False])
def test_key_bytes_go_out_as_they_came_only_while_the_key_is_the_decoded_one(
        fusion: bool) -> None:
    same = StreamBuilder()
    same.stream("in", StringSerde(), StringSerde()).to("same", StringSerde(), StringSerde())
    assert _sent(same, fusion, "in", [_msg(0, 0, "é-ключ".encode(), b"v"),
                                      _msg(0, 1, None, b"w")]) == \
        [("é-ключ".encode(), b"v"), (None, b"w")]
    # A new key is encoded, not replaced by the source's bytes; the same key object may be.
    changed = StreamBuilder()
    (changed.stream("in", StringSerde(), StringSerde())
     .select_key(lambda k, v: v if v != "keep" else k)
     .to("changed", key_serde=StringSerde(), value_serde=StringSerde()))
    assert _sent(changed, fusion, "in", [_msg(0, 0, b"k1", b"new"),
                                         _msg(0, 1, b"k2", b"keep")]) == \
        [(b"new", b"new"), (b"k2", b"keep")]


@pytest.mark.parametrize("fusion", [True, False])
def test_a_processor_after_the_fused_part_gets_the_source_offset(fusion: bool) -> None:
    _KeepOffsets.seen = []
    b = StreamBuilder()
    (b.stream("in", StringSerde(), StringSerde())
     .map_values(str.upper)
     .process(_KeepOffsets)
     .to("offsets", key_serde=StringSerde(), value_serde=StringSerde()))
    assert _sent(b, fusion, "in", [_msg(0, 41, b"k", b"a"), _msg(0, 42, b"k", b"b")]) == \
        [(b"k", b"A"), (b"k", b"B")]
    assert _KeepOffsets.seen == [41, 42]


def test_a_fused_chain_that_never_needs_the_offset_does_not_read_it() -> None:
    task, _producer, _stats = _task(_upper_pipeline(), True)
    source: str = task.run_handler("in").__kstream_source__  # type: ignore[attr-defined]
    assert "offset =" not in source
    assert "msg.offset()" in source  # the error paths still name it


def test_a_task_of_the_only_subscribed_topic_ends_runs_at_another_partition() -> None:
    topology = _upper_pipeline().build().bind("run-handler-test")
    producer, stats = RecordingProducer(), EngineStats()
    collector = KafkaRecordCollector(producer, stats, lambda _t: 1,  # type: ignore[arg-type]
                                     transactional=True)
    task = build_task("run-handler-test", topology, topology.subtopologies()[0], 0, collector,
                      Path(tempfile.mkdtemp(prefix="kstream-run-")), sole_topic=True)
    run = task.run_handler("in")
    assert "msg.topic()" not in run.__kstream_source__  # type: ignore[attr-defined]
    batch = [_msg(0, 0, b"a", b"x"), _msg(0, 1, b"b", b"y"), _msg(2, 0, b"c", b"z")]
    assert run(batch, 0) == 2
    assert [s[1] for s in producer.sent] == [b"a", b"b"]
