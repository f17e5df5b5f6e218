"""The sink operator: serializes a record and hands it to the task's record collector.

It lives in the runtime because every task wraps its topology's SinkNodes in it; the DSL only
declares sinks (`Stream.to`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kstream._serde_defaults import effective
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from kstream.runtime.operator import Emitter, Fusable, FuseResult
from kstream.topology import Partitioner, SinkNode, TopicChooser
from serdes import Serde, SerdeContext
from serdes._fast import fast_serializer


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
    # collector gets that same list. One context per side; only `headers` changes per record,
    # and it is set just before a serde runs (the C codecs do not read contexts).
    # Built-in String/Json serdes are called through their C codec (serdes._fast); if that
    # raises, the serde itself runs, so results and errors are the serde's. Right after a fused
    # aggregation (and to_stream), the value's and key's bytes are those the store just wrote
    # with the same codec, reused when the value is that very object (the key is not rebound
    # in between: the note holds only while no line follows). A str key that is still the
    # object the source decoded (UTF-8 both ways) goes out as the bytes it came in with.
    def can_fuse(self) -> bool:
        return self._static_topic is not None and self._partitioner is None

    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        topic = self._static_topic
        kctx = em.bind(SerdeContext(topic=topic, is_key=True), "kctx")
        vctx = em.bind(SerdeContext(topic=topic, is_key=False), "vctx")
        kfast = fast_serializer(effective(self._key_serde))
        vfast = fast_serializer(effective(self._value_serde))
        key_bytes = None if kfast is None else em.known_key_bytes(kfast)
        source_key = None if kfast is None else em.source_key_bytes(kfast)
        known_key: tuple[str, str] | None = None
        if key_bytes is not None:  # the store's write just encoded it
            known_key = (f"{key_bytes} is not None", key_bytes)
        elif source_key is not None:  # the record came with these bytes
            known_key = (f"key is {source_key[0]}", source_key[1])
        known_value = None if vfast is None else em.known_encoding(vfast)
        kb = _emit_serialize(em, depth, "key", self._key_serde, self._serialize_key, kctx,
                             known_key)
        vb = _emit_serialize(em, depth, "value", self._value_serde, self._serialize_value, vctx,
                             None if known_value is None else (f"value is {known_value[0]}",
                                                               known_value[1]))
        topic_name = em.bind(topic, "topic")
        fuse_send = getattr(self._collector, "fuse_send", None)
        if fuse_send is not None:
            fuse_send(em, depth, topic_name, kb, vb)
        else:
            send = em.bind(self._collector.send, "send")
            em.line(depth, f"{send}({topic_name}, {kb}, {vb}, ts, headers)")
        return FuseResult(depth, skip)


def _emit_serialize(em: Emitter, depth: int, name: str, serde: Serde,
                    serialize: Callable[[Any, SerdeContext], bytes | None], ctx: str,
                    known: tuple[str, str] | None = None) -> str:
    """Lines that serialize local `name`; returns the local holding its bytes. `known`:
    (condition, data): where the condition holds, local data already holds this codec's
    bytes of `name`."""
    ser = em.bind(serialize, "ser")
    out = em.local("data")
    fast = fast_serializer(effective(serde))  # a default serde: its target's shortcut
    if fast is None:
        em.line(depth, f"{ctx}.headers = headers")
        em.line(depth, f"{out} = {ser}({name}, {ctx})")
        return out
    if known is not None:
        condition, data = known
        em.line(depth, f"if {condition}:")
        em.line(depth + 1, f"{out} = {data}")
        em.line(depth, "else:")
        depth += 1
    em.line(depth, "try:")
    em.line(depth + 1, f"{out} = None if {name} is None else {em.bind(fast, 'fast')}({name})")
    em.line(depth, "except Exception:")
    em.line(depth + 1, f"{ctx}.headers = headers")
    em.line(depth + 1, f"{out} = {ser}({name}, {ctx})")
    return out
