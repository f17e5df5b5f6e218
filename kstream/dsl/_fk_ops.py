"""Foreign-key table-table join (KIP-213): the processors and their wire formats.

    left table ──► SubscriptionSendOp ──► <app>-<name>-subscription-registration-topic (by FK)
                                                │
    right table ─► ForeignChangeOp ─┐           ▼
                                    ├──► SubscriptionReceiveOp: store (fk, pk) -> hash, partition
                                    ▼           │
               <app>-<name>-subscription-response-topic (to the left row's partition)
                                    │
                                    ▼
                        ResponseJoinOp: drop if the left row changed since (hash), join, store

Rules (Kafka Streams' SubscriptionSendProcessorSupplier, SubscriptionJoinProcessorSupplier,
ForeignTableJoinProcessorSupplier, ResponseJoinProcessorSupplier):
* A left change sends instructions keyed by foreign key, each carrying a hash of the new left
  value (none for a delete), the primary key and the left row's partition. Inner join: an
  FK change unsubscribes the old FK (DELETE_KEY_NO_PROPAGATE) and subscribes the new one
  (PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE: a result set by the old FK must be unset); a delete
  unsubscribes (DELETE_KEY_AND_PROPAGATE); an insert subscribes with
  PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE (Kafka Streams: PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE,
  which can leave a stale result behind a quick delete and re-insert; see
  SubscriptionSendOp); a null FK skips the record. Left join: every change goes out under
  the new FK with PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE, a null FK included (a delete's new
  FK is null): a null FK is never stored, and answered with no right value; an FK change or
  delete first unsubscribes the old FK with DELETE_KEY_NO_PROPAGATE (Kafka Streams:
  DELETE_KEY_AND_PROPAGATE, whose answer can overtake the new FK's and win).
* The right side stores subscriptions by (fk bytes, pk bytes), so one prefix scan finds every
  subscriber of a foreign key; a right change answers each with the new right value.
* A response whose hash differs from the hash of the left row's current value is stale (the
  row changed or went away meanwhile) and dropped; otherwise the result is
  `joiner(left, right)`, or a delete when the right value is missing (inner join) or the left
  row is gone.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

from kstream.dsl._change import Change
from kstream.dsl._table_ops import ValueGetter
from kstream.processor import Processor, ProcessorContext
from kstream.record import Record
from serdes import Serde, SerdeContext

DELETE_KEY_AND_PROPAGATE = 0
DELETE_KEY_NO_PROPAGATE = 1
PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE = 2
PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE = 3

VERSION = 1
_NO_HASH = bytes(16)
# subscription value: version, instruction, has hash, hash(16), primary partition, pk bytes
_SUB = struct.Struct(">BBB16si")
# response value: version, flags (1: hash, 2: right value), hash(16), primary partition, value
_RESP = struct.Struct(">BB16si")
# subscription store value: has hash, hash(16), primary partition
_STORED = struct.Struct(">B16si")
_LEN = struct.Struct(">I")
_HAS_HASH, _HAS_VALUE = 1, 2


def value_hash(data: bytes | None) -> bytes | None:
    """The hash a subscription carries of the serialized left value (None: no value)."""
    return None if data is None else hashlib.blake2b(data, digest_size=16).digest()


def response_partition(_key: Any, value: bytes, _count: int) -> int:
    """Partitioner of the response topic: back to the left row's own partition."""
    return int(_RESP.unpack_from(value)[3])


def _store_key(fk: bytes, pk: bytes) -> bytes:
    return _LEN.pack(len(fk)) + fk + pk


class SubscriptionSendOp(Processor):
    """Left side: a Change of the left table becomes subscription instructions keyed by FK
    bytes (see the module docstring)."""

    def __init__(self, extractor: Callable[[Any], Any], left: bool, fk_serde: Serde,
                 pk_serde: Serde, value_serde: Serde, topic: str) -> None:
        self._extract = extractor
        self._left = left
        self._fk_serde, self._pk_serde, self._value_serde = fk_serde, pk_serde, value_serde
        self._ctx = SerdeContext(topic=topic)

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream
        self._partition = context._task.partition

    def _fk(self, value: Any) -> bytes | None:
        fk = None if value is None else self._extract(value)
        return None if fk is None else self._fk_serde.serialize(fk, self._ctx)

    def process(self, record: Record) -> None:
        change = record.value
        if record.key is None or (change.old is None and change.new is None):
            return
        old_fk = self._fk(change.old)
        new_fk = self._fk(change.new)
        sends: list[tuple[bytes | None, int]] = []
        if self._left:
            # Every change goes out under the new FK and is answered, a delete too (its new FK
            # is null: answered with no right value, it clears the result). So the old FK is
            # unsubscribed without an answer: Kafka Streams answers it too (DELETE_KEY_AND_
            # PROPAGATE), and that answer, joiner(value, None) with the current hash, can
            # arrive after the new FK's (another subscription partition) and win, leaving an
            # order without the customer it has (seen on the broker).
            if change.old is not None and old_fk is not None and old_fk != new_fk:
                sends.append((old_fk, DELETE_KEY_NO_PROPAGATE))
            sends.append((new_fk, PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        elif change.old is not None:
            if old_fk is None:
                self.context._skip("null_key", record)
                return
            if change.new is None:
                sends.append((old_fk, DELETE_KEY_AND_PROPAGATE))
            elif new_fk is None:
                self.context._skip("null_key", record)
                return
            else:
                if new_fk != old_fk:
                    sends.append((old_fk, DELETE_KEY_NO_PROPAGATE))
                sends.append((new_fk, PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        elif new_fk is None:
            self.context._skip("null_key", record)
            return
        else:
            # Kafka Streams sends PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE here. That leaves a stale
            # result when a row is deleted and re-inserted quickly: the delete's tombstone
            # response is dropped as stale (the row exists again), and the insert, finding no
            # right row, answers nothing. Asking for an answer either way lets the response
            # clear it; the result store keeps a never-joined row from emitting a tombstone.
            sends.append((new_fk, PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE))
        new_bytes = (None if change.new is None
                     else self._value_serde.serialize(change.new, self._ctx))
        digest = value_hash(new_bytes)
        pk = self._pk_serde.serialize(record.key, self._ctx) or b""
        for fk, instruction in sends:
            value = _SUB.pack(VERSION, instruction, digest is not None, digest or _NO_HASH,
                              self._partition) + pk
            self._down(Record(fk, value, record.timestamp, None, record.topic,
                              record.partition, record.offset))


class _Responder:
    """Builds response records (key: pk bytes) for the right side's processors."""

    def __init__(self, right_value_serde: Serde, topic: str) -> None:
        self._ser = right_value_serde.serialize
        self._ctx = SerdeContext(topic=topic)

    def response(self, pk: bytes, has_hash: int, digest: bytes, partition: int,
                 right_value: Any, timestamp: int) -> Record:
        flags = _HAS_HASH if has_hash else 0
        data = b""
        if right_value is not None:
            flags |= _HAS_VALUE
            data = self._ser(right_value, self._ctx) or b""
        return Record(pk, _RESP.pack(VERSION, flags, digest, partition) + data, timestamp)


class _RightSideOp(Processor):
    """What both right-side processors hold: the subscription store, the FK serde and a
    responder writing to the response topic."""

    def __init__(self, store: str, fk_serde: Serde, right_value_serde: Serde,
                 topic: str) -> None:
        self._store_name = store
        self._fk_serde = fk_serde
        self._responder = _Responder(right_value_serde, topic)
        self._ctx = SerdeContext(topic=topic)

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream
        self._store = context.get_store(self._store_name)


class SubscriptionReceiveOp(_RightSideOp):
    """Right side: keep the subscription store current and answer each subscription with the
    right table's current value for its FK, as its instruction says."""

    def __init__(self, store: str, right: ValueGetter, fk_serde: Serde,
                 right_value_serde: Serde, topic: str) -> None:
        super().__init__(store, fk_serde, right_value_serde, topic)
        self._right = right

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self._get_right = self._right.build(context)

    def process(self, record: Record) -> None:
        fk: bytes | None = record.key
        data: bytes = record.value
        version, instruction, has_hash, digest, partition = _SUB.unpack_from(data)
        if version != VERSION:
            raise ValueError(f"subscription of version {version}; this kstream reads {VERSION}")
        pk = data[_SUB.size:]
        if fk is None:
            if instruction != PROPAGATE_NULL_IF_NO_FK_VAL_AVAILABLE:
                self.context._skip("null_key", record)
                return
            right = None
        else:
            key = _store_key(fk, pk)
            if instruction in (DELETE_KEY_AND_PROPAGATE, DELETE_KEY_NO_PROPAGATE):
                self._store.delete(key)
            else:
                self._store.put(key, _STORED.pack(has_hash, digest, partition))
            right = self._get_right(self._fk_serde.deserialize(fk, self._ctx))
        if instruction == DELETE_KEY_NO_PROPAGATE:
            return
        if instruction == DELETE_KEY_AND_PROPAGATE:
            right = None
        elif instruction == PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE and right is None:
            return
        self._down(self._responder.response(pk, has_hash, digest, partition, right,
                                            record.timestamp))


class ForeignChangeOp(_RightSideOp):
    """Right side: a change of a right row answers every subscriber of its key (one prefix
    scan of the subscription store) with the new value."""

    def process(self, record: Record) -> None:
        if record.key is None:
            self.context._skip("null_key", record)
            return
        fk = self._fk_serde.serialize(record.key, self._ctx) or b""
        prefix = _LEN.pack(len(fk)) + fk
        new = record.value.new
        for key, stored in list(self._store.prefix_scan(prefix)):
            has_hash, digest, partition = _STORED.unpack(stored)
            self._down(self._responder.response(key[len(prefix):], has_hash, digest,
                                                 partition, new, record.timestamp))


class ResponseJoinOp(Processor):
    """Left side: join a response with the left row's current value, unless the row changed
    since the subscription was sent; the result is stored (for the old value of the Change)
    and forwarded as Change(old result, new result)."""

    def __init__(self, left: ValueGetter, joiner: Callable[[Any, Any], Any], left_join: bool,
                 pk_serde: Serde, left_value_serde: Serde, right_value_serde: Serde,
                 result_store: str, topic: str) -> None:
        self._left = left
        self._joiner = joiner
        self._left_join = left_join
        self._pk_serde = pk_serde
        self._left_value_serde = left_value_serde
        self._right_value_serde = right_value_serde
        self._result_store = result_store
        self._ctx = SerdeContext(topic=topic)
        self.stale = 0  # responses dropped because the left row changed meanwhile

    def init(self, context: ProcessorContext) -> None:
        self.context = context
        self._down = context._downstream
        self._get_left = self._left.build(context)
        self._store = context.get_store(self._result_store)

    def process(self, record: Record) -> None:
        data: bytes = record.value
        version, flags, digest, _partition = _RESP.unpack_from(data)
        if version != VERSION:
            raise ValueError(f"response of version {version}; this kstream reads {VERSION}")
        ctx = self._ctx
        pk = self._pk_serde.deserialize(record.key, ctx)
        current = self._get_left(pk)
        current_hash = (None if current is None
                        else value_hash(self._left_value_serde.serialize(current, ctx)))
        sent_hash = digest if flags & _HAS_HASH else None
        if sent_hash != current_hash:
            self.stale += 1
            return
        right = (self._right_value_serde.deserialize(data[_RESP.size:], ctx)
                 if flags & _HAS_VALUE else None)
        if current is None or (right is None and not self._left_join):
            result = None
        else:
            result = self._joiner(current, right)
        old = self._store.get(pk)
        self._store.put(pk, result)
        if old is None and result is None:
            return
        self._down(Record(pk, Change(old, result), record.timestamp, None, record.topic,
                          record.partition, record.offset))
