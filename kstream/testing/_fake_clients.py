"""In-memory stand-ins for the confluent-kafka Producer and Consumer that the runtime calls.

The TopologyTestDriver runs the production `KafkaRecordCollector` and committers
(kstream.runtime.commit) over these, the way Kafka Streams' TopologyTestDriver runs its
production task and producer over a MockProducer. They implement only the calls the runtime
makes, with the Kafka semantics the runtime relies on:

* Topic logs live in one `FakeKafka`. A record gets its offset when `produce` returns (there is
  no network); its delivery report runs at the next `poll`/`flush`, as with librdkafka.
* Transactions: records produced inside one are appended at once but PENDING; commit makes them
  COMMITTED, abort makes them ABORTED. Aborted records keep their offsets, as on a broker, and
  read_committed readers skip them. `send_offsets_to_transaction` offsets become the group's
  committed offsets only when the transaction commits. `init_transactions` with a
  transactional id another producer holds fences that producer and aborts its open
  transaction, like a new incarnation on a broker.
* Delivery reports of records an abort voids and that were not yet reported are dropped
  (nothing waits for them once the transaction is void; the stores have discarded the writes).

Deliberate differences from a broker: commit/abort markers take no offset (offsets stay dense,
so tests can assert them), and there are no timeouts, retries or rebalances.

`FakeKafka.faults` makes a named call raise, for tests of the failure paths:
`kafka.faults.fail("commit_transaction", KafkaError(KafkaError._TIMED_OUT, retriable=True))`.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from kstream.record import Headers
from kstream.runtime.partitioner import murmur2, partition_for_key  # re-exported

__all__ = ["ABORTED", "COMMITTED", "PENDING", "FakeConsumer", "FakeGroupMetadata", "FakeKafka",
           "FakeMessage", "FakeProducer", "FaultInjector", "murmur2", "partition_for_key"]

TIMESTAMP_CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME

# Record states in a log. Only a transactional producer writes PENDING records.
COMMITTED = "committed"
PENDING = "pending"
ABORTED = "aborted"

DeliveryCallback = Callable[[KafkaError | None, Any], None]


# -- records ----------------------------------------------------------------------------------
class FakeMessage:
    """One record of an in-memory log; implements confluent_kafka.Message's read methods (the
    task's Message protocol) and is what delivery reports receive."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_timestamp", "_headers",
                 "state")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, timestamp: int, headers: Headers | None,
                 state: str = COMMITTED) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._timestamp = timestamp
        self._headers = headers
        self.state = state

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return (TIMESTAMP_CREATE_TIME, self._timestamp)

    def headers(self) -> Headers | None:
        # A fresh list per call, like confluent-kafka: processors may mutate the record's list.
        return list(self._headers) if self._headers is not None else None

    def error(self) -> None:
        return None

    def __repr__(self) -> str:
        return (f"FakeMessage({self._topic}[{self._partition}]@{self._offset}, {self.state}, "
                f"key={self._key!r}, value={self._value!r}, timestamp={self._timestamp})")


# -- fault injection --------------------------------------------------------------------------
class FaultInjector:
    """Makes named client calls raise, in order, once per planned error; counts every call.

    A KafkaError is raised as KafkaException(error), as confluent-kafka does, so the runtime's
    own translation (kstream.runtime.kafka_errors) decides what it means.
    """

    def __init__(self) -> None:
        self._planned: dict[str, deque[BaseException]] = {}
        self.calls: Counter[str] = Counter()

    def fail(self, call: str, error: KafkaError | BaseException, times: int = 1) -> None:
        """The next `times` calls of `call` (e.g. "commit_transaction", "produce") raise."""
        exc = KafkaException(error) if isinstance(error, KafkaError) else error
        self._planned.setdefault(call, deque()).extend([exc] * times)

    def check(self, call: str) -> None:
        self.calls[call] += 1
        planned = self._planned.get(call)
        if planned:
            raise planned.popleft()

    @property
    def pending(self) -> dict[str, int]:
        """Planned failures not yet raised, per call."""
        return {call: len(q) for call, q in self._planned.items() if q}


# -- the cluster ------------------------------------------------------------------------------
class FakeKafka:
    """Topic logs, record states, consumer group offsets and transactional-id ownership.

    `on_append` listeners see every produced record as it is appended (any state);
    `on_visible` listeners see records once a read_committed consumer could read them (at once
    for a non-transactional producer, at commit for a transactional one). Records appended with
    `append` directly (a test's own input) notify nobody.
    """

    def __init__(self, partition_count: Callable[[str], int]) -> None:
        self.partition_count = partition_count
        self.logs: dict[tuple[str, int], list[FakeMessage]] = defaultdict(list)
        self.group_offsets: dict[str, dict[tuple[str, int], TopicPartition]] = defaultdict(dict)
        self.faults = FaultInjector()
        self.on_append: list[Callable[[FakeMessage], None]] = []
        self.on_visible: list[Callable[[list[FakeMessage]], None]] = []
        self._round_robin: dict[str, int] = defaultdict(int)
        self._owners: dict[str, FakeProducer] = {}  # transactional.id -> current producer

    def choose_partition(self, topic: str, key: bytes | None, count: int) -> int:
        """Keyed: murmur2 like the Java producer. Null key: round robin from 0 per topic (a
        deterministic stand-in for librdkafka's random choice)."""
        if count == 1:
            return 0
        if key is None:
            partition = self._round_robin[topic] % count
            self._round_robin[topic] += 1
            return partition
        return partition_for_key(key, count)

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               timestamp: int, headers: Headers | None, state: str = COMMITTED) -> FakeMessage:
        log = self.logs[(topic, partition)]
        # Invariant: a record's offset is its index in its partition's log (dense offsets).
        msg = FakeMessage(topic, partition, len(log), key, value, timestamp, headers, state)
        log.append(msg)
        return msg

    def end_offset(self, topic: str, partition: int) -> int:
        return len(self.logs.get((topic, partition), ()))

    def read(self, topic: str, partition: int,
             isolation: str = "read_committed") -> list[FakeMessage]:
        """What a consumer from the beginning reads: read_uncommitted everything; read_committed
        stops at the first PENDING record (the last stable offset) and skips ABORTED ones."""
        log = self.logs.get((topic, partition), [])
        if isolation == "read_uncommitted":
            return list(log)
        out = []
        for msg in log:
            if msg.state == PENDING:
                break
            if msg.state == COMMITTED:
                out.append(msg)
        return out

    def committed_offsets(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset per partition (OFFSET_INVALID, -1001, when none)."""
        offsets = self.group_offsets.get(group, {})
        return {p: offsets[(topic, p)].offset if (topic, p) in offsets else OFFSET_INVALID
                for p in range(self.partition_count(topic))}

    def _commit_offsets(self, group: str, offsets: Iterable[TopicPartition]) -> None:
        stored = self.group_offsets[group]
        for tp in offsets:
            stored[(tp.topic, tp.partition)] = _topic_partition(tp.topic, tp.partition,
                                                                tp.offset, tp.metadata)

    def _appended(self, msg: FakeMessage) -> None:
        for listener in self.on_append:
            listener(msg)

    def _visible(self, msgs: list[FakeMessage]) -> None:
        for listener in self.on_visible:
            listener(msgs)


def _topic_partition(topic: str, partition: int, offset: int,
                     metadata: str | None) -> TopicPartition:
    # confluent-kafka accepts no metadata=None
    if metadata is None:
        return TopicPartition(topic, partition, offset)
    return TopicPartition(topic, partition, offset, metadata=metadata)


def _error(code: int, reason: str, *, fatal: bool = False,
           txn_requires_abort: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, reason, fatal=fatal,
                                     txn_requires_abort=txn_requires_abort))


# -- the producer -----------------------------------------------------------------------------
class FakeProducer:
    """confluent_kafka.Producer as the collector and the committers use it."""

    _UNINITIALIZED, _READY, _IN_TRANSACTION, _FENCED = "uninitialized", "ready", "in", "fenced"

    def __init__(self, kafka: FakeKafka, transactional_id: str | None = None,
                 on_delivery: DeliveryCallback | None = None) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id
        self._on_delivery = on_delivery  # the producer-wide `on_delivery` setting
        self._state = self._UNINITIALIZED if transactional_id else self._READY
        self._reports: list[tuple[DeliveryCallback, FakeMessage]] = []
        self._txn_records: list[FakeMessage] = []
        self._txn_offsets: dict[str, list[TopicPartition]] = defaultdict(list)

    @property
    def in_transaction(self) -> bool:
        return self._state == self._IN_TRANSACTION

    # Positional like the collector calls it: keyword arguments are accepted too.
    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int = -1, callback: DeliveryCallback | None = None,
                on_delivery: DeliveryCallback | None = None, timestamp: int = 0,
                headers: Headers | None = None) -> None:
        kafka = self.kafka
        kafka.faults.check("produce")
        self._check_usable("produce")
        transactional = self.transactional_id is not None
        if transactional and self._state != self._IN_TRANSACTION:
            raise _error(KafkaError._STATE, "produce outside a transaction")
        count = kafka.partition_count(topic)
        if partition < 0:
            partition = kafka.choose_partition(topic, key, count)
        elif partition >= count:
            raise _error(KafkaError._UNKNOWN_PARTITION,
                         f"partition {partition} of {topic} does not exist ({count} partitions)")
        msg = kafka.append(topic, partition, key, value, timestamp,
                           list(headers) if headers is not None else None,
                           PENDING if transactional else COMMITTED)
        report = callback or on_delivery or self._on_delivery
        if report is not None:
            self._reports.append((report, msg))
        if transactional:
            self._txn_records.append(msg)
        kafka._appended(msg)
        if not transactional:
            kafka._visible([msg])

    def poll(self, timeout: float | None = None) -> int:
        self.kafka.faults.check("poll")
        self._check_usable("poll")
        return self._serve_reports()

    def flush(self, timeout: float | None = None) -> int:
        """Runs the queued delivery reports; returns 0 (nothing is left in flight)."""
        self.kafka.faults.check("flush")
        self._check_usable("flush")
        self._serve_reports()
        return 0

    def purge(self, in_queue: bool = True, in_flight: bool = True,
              blocking: bool = True) -> None:
        self._reports.clear()

    def __len__(self) -> int:
        return len(self._reports)

    def _serve_reports(self) -> int:
        reports, self._reports = self._reports, []
        for report, msg in reports:
            report(None, msg)
        return len(reports)

    # -- transactions ------------------------------------------------------------------------
    def init_transactions(self, timeout: float | None = None) -> None:
        """Fences the previous owner of the transactional id and aborts its open transaction."""
        self.kafka.faults.check("init_transactions")
        self._check_usable("init_transactions")
        if self.transactional_id is None:
            raise _error(KafkaError._NOT_CONFIGURED, "transactional.id is not set", fatal=True)
        previous = self.kafka._owners.get(self.transactional_id)
        if previous is not None and previous is not self:
            previous._fence()
        if self._state == self._IN_TRANSACTION:
            self._abort()
        self.kafka._owners[self.transactional_id] = self
        self._state = self._READY

    def begin_transaction(self) -> None:
        self.kafka.faults.check("begin_transaction")
        self._check_usable("begin_transaction")
        if self._state != self._READY:
            raise _error(KafkaError._STATE, f"begin_transaction in state {self._state}")
        self._state = self._IN_TRANSACTION

    def send_offsets_to_transaction(self, positions: list[TopicPartition],
                                    group_metadata: FakeGroupMetadata,
                                    timeout: float | None = None) -> None:
        self.kafka.faults.check("send_offsets_to_transaction")
        self._check_in_transaction("send_offsets_to_transaction")
        self._txn_offsets[group_metadata.group_id].extend(positions)

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Records and offsets of the transaction become visible/committed together."""
        self.kafka.faults.check("commit_transaction")
        self._check_in_transaction("commit_transaction")
        records, self._txn_records = self._txn_records, []
        for msg in records:
            msg.state = COMMITTED
        for group, offsets in self._txn_offsets.items():
            self.kafka._commit_offsets(group, offsets)
        self._txn_offsets.clear()
        self._state = self._READY
        self.kafka._visible(records)

    def abort_transaction(self, timeout: float | None = None) -> None:
        self.kafka.faults.check("abort_transaction")
        self._check_in_transaction("abort_transaction")
        self._abort()
        self._state = self._READY

    def _abort(self) -> None:
        records, self._txn_records = self._txn_records, []
        for msg in records:
            msg.state = ABORTED
        self._txn_offsets.clear()
        voided = {id(msg) for msg in records}
        self._reports = [(r, m) for r, m in self._reports if id(m) not in voided]

    def _fence(self) -> None:
        if self._state == self._IN_TRANSACTION:
            self._abort()
        self._state = self._FENCED

    def _check_usable(self, call: str) -> None:
        if self._state == self._FENCED:
            raise _error(KafkaError._FENCED, f"{call}: producer fenced by a newer instance "
                         f"with transactional.id {self.transactional_id}", fatal=True)

    def _check_in_transaction(self, call: str) -> None:
        self._check_usable(call)
        if self._state != self._IN_TRANSACTION:
            raise _error(KafkaError._STATE, f"{call} outside a transaction")


# -- the consumer -----------------------------------------------------------------------------
class FakeGroupMetadata:
    """What `consumer_group_metadata()` returns: opaque in confluent-kafka, the group here."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id

    def __repr__(self) -> str:
        return f"FakeGroupMetadata({self.group_id!r})"


class FakeConsumer:
    """confluent_kafka.Consumer as the committers and the driver use it: positions and group
    offsets. The driver hands records to tasks itself and reports each with `consumed`."""

    def __init__(self, kafka: FakeKafka, group_id: str) -> None:
        self.kafka = kafka
        self.group_id = group_id
        self._positions: dict[tuple[str, int], int] = {}

    def consumed(self, msg: FakeMessage) -> None:
        """What consume() does to the position: the next offset to read."""
        self._positions[(msg._topic, msg._partition)] = msg._offset + 1

    def seek(self, partition: TopicPartition) -> None:
        self._positions[(partition.topic, partition.partition)] = partition.offset

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self.kafka.faults.check("position")
        get = self._positions.get
        return [TopicPartition(tp.topic, tp.partition, get((tp.topic, tp.partition),
                                                              OFFSET_INVALID))
                for tp in partitions]

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        """Offsets outside a transaction (at-least-once, at-most-once)."""
        self.kafka.faults.check("commit")
        if offsets is None:
            raise _error(KafkaError._INVALID_ARG, "commit needs explicit offsets here")
        self.kafka._commit_offsets(self.group_id, offsets)
        return None if asynchronous else list(offsets)

    def committed(self, partitions: list[TopicPartition],
                  timeout: float | None = None) -> list[TopicPartition]:
        self.kafka.faults.check("committed")
        stored = self.kafka.group_offsets.get(self.group_id, {})
        out = []
        for tp in partitions:
            got = stored.get((tp.topic, tp.partition))
            out.append(_topic_partition(tp.topic, tp.partition, OFFSET_INVALID, None)
                       if got is None else
                       _topic_partition(tp.topic, tp.partition, got.offset, got.metadata))
        return out

    def consumer_group_metadata(self) -> FakeGroupMetadata:
        return FakeGroupMetadata(self.group_id)
