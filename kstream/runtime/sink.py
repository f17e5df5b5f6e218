"""The sink operator: serializes a record and hands it to the task's record collector.

It lives in the runtime because every task wraps its topology's SinkNodes in it; the DSL only
declares sinks (`Stream.to`).
"""

from __future__ import annotations

from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult
from kstream.topology import Partitioner, SinkNode, TopicChooser
from serdes import Serde, SerdeContext


class SinkOp(Processor, Fusable):
    """Serializes and hands the record to the task's record collector."""

    def __init__(self, node: SinkNode) -> None:
        self._topic: str | TopicChooser = node.topic
        self._key_serde: Serde = node.key_serde
        self._value_serde: Serde = node.value_serde
        self._partitioner: Partitioner | None = node.partitioner

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._collector = context._task.collector
        self._ctx = SerdeContext()
        self._serialize_key = self._key_serde.serialize
        self._serialize_value = self._value_serde.serialize
        self._static_topic = self._topic if isinstance(self._topic, str) else None

    def process(self, record: Record) -> None:
        topic = self._static_topic
        if topic is None:
            topic = self._topic(record)  # type: ignore[operator]
        ctx = self._ctx
        ctx.topic = topic
        ctx.headers = record.headers
        ctx.is_key = True
        key = self._serialize_key(record.key, ctx)
        ctx.is_key = False
        value = self._serialize_value(record.value, ctx)
        partition = -1
        if self._partitioner is not None:
            count = self._collector.partition_count(topic)
            partition = self._partitioner(record.key, record.value, count)
            if not 0 <= partition < count:
                raise ValueError(f"partitioner returned {partition} for {topic} "
                                 f"with {count} partitions")
        self._collector.send(topic, key, value, record.timestamp, record.headers, partition)

    # Fused form of `process` for a fixed topic without partitioner: key serialized before
    # value, both serdes see the record's own header list (they may add to it), and the
    # collector gets that same list. One context per side, so only `headers` changes per record.
    def can_fuse(self) -> bool:
        return self._static_topic is not None and self._partitioner is None

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        topic = self._static_topic
        kctx = em.bind(SerdeContext(topic=topic, is_key=True), "kctx")
        vctx = em.bind(SerdeContext(topic=topic, is_key=False), "vctx")
        kser, vser = em.bind(self._serialize_key, "kser"), em.bind(self._serialize_value, "vser")
        send = em.bind(self._collector.send, "send")
        em.line(depth, f"{kctx}.headers = {vctx}.headers = headers")
        em.line(depth, f"{send}({em.bind(topic, 'topic')}, {kser}(key, {kctx}), "
                       f"{vser}(value, {vctx}), ts, headers)")
        return FuseResult(depth, skip)
