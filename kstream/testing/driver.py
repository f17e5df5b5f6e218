"""TopologyTestDriver: run a topology in-process, without Kafka, on the engine's own tasks.

Tasks come from `build_task` and receive message objects exactly as the engine hands them
confluent-kafka messages; only the Kafka clients are replaced, by in-memory topic logs. So a
test exercises the production processors, stores, stream time, punctuation and error policy.

Everything is synchronous and deterministic: no threads, and the only clock is the driver's.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from kstream.config import ERROR_DEAD_LETTER, ERROR_FAIL, ERROR_POLICIES, ConfigError
from kstream.dsl import StreamBuilder
from kstream.errors import RecordError, dead_letter_headers
from kstream.record import Headers, Record
from kstream.runtime.task import Task, build_task
from kstream.topology import Topology
from serdes import Serde, SerdeContext, resolve

__all__ = ["TestInputTopic", "TestOutputTopic", "TopologyTestDriver", "murmur2",
           "partition_for_key"]

TIMESTAMP_CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME

HeadersLike = Mapping[str, Any] | Iterable[tuple[str, Any]]
"""Header values may be bytes, str (sent as UTF-8) or None, as confluent-kafka accepts."""


# -- Kafka's default partitioner --------------------------------------------------------------
def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (signed 32-bit result), so keys land where Java puts them."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    words = length // 4
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = length & 3
    index = length - tail
    if tail == 3:
        h ^= data[index + 2] << 16
    if tail >= 2:
        h ^= data[index + 1] << 8
    if tail >= 1:
        h ^= data[index]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - 0x100000000 if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """`toPositive(murmur2(key)) % partitions`, the Java producer's choice for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- the in-memory log ------------------------------------------------------------------------
class _Message:
    """One record of an in-memory topic; implements the task's Message protocol."""

    __slots__ = ("_topic", "_partition", "_offset", "_key", "_value", "_timestamp", "_headers")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, timestamp: int, headers: Headers | None) -> None:
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._key = key
        self._value = value
        self._timestamp = timestamp
        self._headers = headers

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
        return (f"_Message({self._topic}[{self._partition}]@{self._offset}, key={self._key!r}, "
                f"value={self._value!r}, timestamp={self._timestamp})")


class _Collector:
    """The tasks' RecordCollector: appends to the driver's topic logs instead of producing."""

    def __init__(self, driver: TopologyTestDriver) -> None:
        self._driver = driver

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers | None, partition: int = -1) -> None:
        driver = self._driver
        count = driver.partition_count(topic)
        if partition < 0:
            partition = driver._choose_partition(topic, key, count)
        elif partition >= count:
            raise ValueError(f"partition {partition} of {topic} does not exist "
                             f"({count} partitions; set them with partitions={{...}})")
        msg = driver._append(topic, partition, key, value, timestamp,
                             list(headers) if headers is not None else None)
        driver._outputs[topic].append(msg)
        if topic in driver._handlers:
            driver._pending.append(msg)

    def partition_count(self, topic: str) -> int:
        return self._driver.partition_count(topic)

    def send_changelog(self, topic: str, partition: int, key: bytes, value: bytes | None,
                       timestamp: int, on_delivery: Callable[[Any, Any], None]) -> None:
        """Recorded now; `on_delivery` runs at the commit's flush step, as with the producer."""
        driver = self._driver
        msg = driver._append(topic, partition, key, value, timestamp, None)
        driver._outputs[topic].append(msg)
        driver._deliveries.append((on_delivery, msg))


# -- the driver -------------------------------------------------------------------------------
class TopologyTestDriver:
    """Runs a topology without Kafka: pipe records in, read records out, advance the clock.

    One task per (sub-topology, partition), built once, like an instance owning every
    partition. Records that sinks write to a topic the topology also reads (repartition
    topics) are processed before the next piped record, depth-first. Tasks commit after
    every `commit_every` piped records and after each `advance_wall_clock` (None: only on
    `commit()` and `close()`).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, topology: Topology | StreamBuilder, application_id: str = "test-app", *,
                 partitions: Mapping[str, int] | None = None, error_policy: str = ERROR_FAIL,
                 initial_wall_clock_ms: int = 0, state_dir: Path | str | None = None,
                 commit_every: int | None = 1, fusion: bool = True) -> None:
        if error_policy not in ERROR_POLICIES:
            raise ConfigError(f"error_policy {error_policy!r} must be one of "
                              f"{', '.join(ERROR_POLICIES)}")
        if commit_every is not None and commit_every <= 0:
            raise ConfigError(f"commit_every must be positive or None, got {commit_every}")
        for topic, count in (partitions or {}).items():
            if count <= 0:
                raise ConfigError(f"topic {topic!r} needs at least one partition, got {count}")
        built = topology if isinstance(topology, Topology) else topology.build()
        self.topology: Topology = built.bind(application_id)
        self._subtopologies = self.topology.subtopologies()  # validates before making a dir
        self.application_id = application_id
        self.error_policy = error_policy
        self.commit_every = commit_every
        self.fusion = fusion  # as AppConfig.fusion: False runs every operator's process()
        self.dlq_topic = f"{application_id}-dlq"
        self._partitions = dict(partitions or {})
        self._wall_clock_ms = initial_wall_clock_ms
        self._offsets: dict[tuple[str, int], int] = defaultdict(int)
        self._round_robin: dict[str, int] = defaultdict(int)
        self._outputs: dict[str, deque[_Message]] = defaultdict(deque)
        self._pending: list[_Message] = []  # sent to source topics, not yet processed
        self._deliveries: list[tuple[Callable[[Any, Any], None], _Message]] = []
        self._uncommitted = 0
        self._closed = False
        self._own_state_dir = state_dir is None
        self.state_dir = (Path(tempfile.mkdtemp(prefix="kstream-test-")) if state_dir is None
                          else Path(state_dir))
        self._collector = _Collector(self)
        self._tasks: dict[tuple[int, int], Task] = {}
        # topic -> per-partition task handler, as the engine binds them on assignment
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}
        try:
            self._create_tasks()
        except BaseException:
            self._close(commit=False)
            raise

    def _create_tasks(self) -> None:
        for sub in self._subtopologies:
            count = max(self.partition_count(t) for t in sub.source_topics)
            for partition in range(count):
                self._tasks[(sub.index, partition)] = build_task(
                    self.application_id, self.topology, sub, partition, self._collector,
                    self.state_dir, self._clock, fusion=self.fusion)
            for topic in sub.source_topics:
                self._handlers[topic] = [self._tasks[(sub.index, p)].handler(topic)
                                         for p in range(self.partition_count(topic))]

    # -- topics --------------------------------------------------------------------------------
    def input_topic(self, name: str, key_serde: Any = None, value_serde: Any = None, *,
                    start_timestamp_ms: int | None = None, advance_ms: int = 0) -> TestInputTopic:
        """A writer for source topic `name`; serdes as in `serdes.resolve` (None: raw bytes)."""
        if name not in self._handlers:
            raise ValueError(f"{name!r} is not a source topic of the topology; "
                             f"source topics: {sorted(self._handlers)}")
        start = self._wall_clock_ms if start_timestamp_ms is None else start_timestamp_ms
        return TestInputTopic(self, name, resolve(key_serde), resolve(value_serde), start,
                              advance_ms)

    def output_topic(self, name: str, key_serde: Any = None,
                     value_serde: Any = None) -> TestOutputTopic:
        """A reader of everything sent to `name` (sinks, changelogs, the dead-letter topic)."""
        return TestOutputTopic(self, name, resolve(key_serde), resolve(value_serde))

    def partition_count(self, topic: str) -> int:
        return self._partitions.get(topic, 1)

    # -- state and time ------------------------------------------------------------------------
    @property
    def late_records(self) -> int:
        """Records windowed operators dropped as too late (each operator counts its own)."""
        return sum(task.dropped_late for task in self._tasks.values())

    def get_store(self, name: str, partition: int = 0) -> Any:
        """The store object that `build_task` created for `name` in the given partition's task."""
        for sub in self._subtopologies:
            if name in sub.stores:
                task = self._tasks.get((sub.index, partition))
                if task is None:
                    raise KeyError(f"store {name!r} has no partition {partition}")
                return task.stores[name]
        known = sorted(s for sub in self._subtopologies for s in sub.stores)
        raise KeyError(f"unknown store {name!r}; stores: {known}")

    def _clock(self) -> int:
        return self._wall_clock_ms

    @property
    def wall_clock_ms(self) -> int:
        """The clock the tasks see; it moves only through `advance_wall_clock`."""
        return self._wall_clock_ms

    def advance_wall_clock(self, ms: int) -> None:
        """Move the clock and fire due wall-clock punctuators on every task (then commit)."""
        if ms < 0:
            raise ValueError(f"the wall clock cannot go back ({ms} ms)")
        self._check_open()
        self._wall_clock_ms += ms
        try:
            for key in sorted(self._tasks):
                self._tasks[key].punctuate_wall_clock()
            self._drain()
        except BaseException:
            self._pending.clear()
            raise
        if self.commit_every is not None:
            self.commit()

    def commit(self) -> None:
        """The engine's commit steps: changelogs (prepare), flush (delivery reports), apply."""
        self._check_open()
        tasks = [self._tasks[key] for key in sorted(self._tasks)]
        for task in tasks:
            task.prepare_commit()
        deliveries, self._deliveries = self._deliveries, []
        for on_delivery, msg in deliveries:
            on_delivery(None, msg)
        for task in tasks:
            task.after_commit()
        self._uncommitted = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is pending, close the tasks and remove the temporary state directory."""
        self._close(commit=True)

    def _close(self, commit: bool) -> None:
        if self._closed:
            return
        try:
            if commit and self._uncommitted:
                self.commit()
        finally:
            self._closed = True
            try:
                for key in sorted(self._tasks):
                    self._tasks[key].close()
            finally:
                self._tasks.clear()
                if self._own_state_dir:
                    shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> TopologyTestDriver:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._close(commit=exc_type is None)

    # -- processing ----------------------------------------------------------------------------
    def _pipe(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None,
              timestamp: int, headers: Headers | None) -> None:
        self._check_open()
        count = self.partition_count(topic)
        if partition is None:
            partition = self._choose_partition(topic, key, count)
        elif not 0 <= partition < count:
            raise ValueError(f"partition {partition} of {topic} does not exist "
                             f"({count} partitions)")
        self._pending.append(self._append(topic, partition, key, value, timestamp, headers))
        try:
            self._drain()
        except BaseException:
            self._pending.clear()
            raise
        self._uncommitted += 1
        if self.commit_every is not None and self._uncommitted >= self.commit_every:
            self.commit()

    def _drain(self) -> None:
        """Process pending records depth-first: a record's fed-back outputs go before its
        siblings, so order depends only on the input. A task is never re-entered mid-record."""
        stack = self._pending[::-1]
        self._pending = []
        dead_letter = self.error_policy == ERROR_DEAD_LETTER
        while stack:
            msg = stack.pop()
            try:
                self._handlers[msg.topic()][msg.partition()](msg)
            except RecordError as err:
                if not dead_letter:
                    raise
                self._collector.send(self.dlq_topic, msg.key(), msg.value(),
                                     msg.timestamp()[1], dead_letter_headers(err, msg.headers()))
            if self._pending:
                stack.extend(reversed(self._pending))
                self._pending = []

    def _append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                timestamp: int, headers: Headers | None) -> _Message:
        offsets = self._offsets
        offset = offsets[(topic, partition)]
        offsets[(topic, partition)] = offset + 1
        return _Message(topic, partition, offset, key, value, timestamp, headers)

    def _choose_partition(self, topic: str, key: bytes | None, count: int) -> int:
        """Keyed: murmur2 like the Java producer. Null key: round robin from 0 (deterministic
        stand-in for librdkafka's random choice)."""
        if count == 1:
            return 0
        if key is None:
            partition = self._round_robin[topic] % count
            self._round_robin[topic] += 1
            return partition
        return partition_for_key(key, count)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the TopologyTestDriver is closed")


class TestInputTopic:
    """Serializes and pipes records into one source topic (like Kafka Streams' TestInputTopic).

    Records without a timestamp get the topic's current time, which then moves `advance_ms`.
    """

    __test__ = False

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde,
                 value_serde: Serde, start_timestamp_ms: int, advance_ms: int) -> None:
        if advance_ms < 0:
            raise ValueError(f"advance_ms must be >= 0, got {advance_ms}")
        self._driver = driver
        self.topic = topic
        self._key_serde = key_serde
        self._value_serde = value_serde
        self._ctx = SerdeContext(topic=topic)
        self.current_time_ms = start_timestamp_ms
        self.advance_ms = advance_ms

    def pipe(self, key: Any, value: Any, timestamp: int | None = None,
             headers: HeadersLike | None = None, partition: int | None = None) -> None:
        """Send one record and process it (and whatever it feeds back) to completion."""
        if timestamp is None:
            timestamp = self.current_time_ms
            self.current_time_ms += self.advance_ms
        hdrs = _headers(headers)
        ctx = self._ctx
        ctx.headers = hdrs
        ctx.is_key = True
        key_bytes = self._key_serde.serialize(key, ctx)
        ctx.is_key = False
        value_bytes = self._value_serde.serialize(value, ctx)
        self._driver._pipe(self.topic, partition, key_bytes, value_bytes, timestamp, hdrs)

    def pipe_many(self, records: Iterable[tuple[Any, Any] | tuple[Any, Any, int]]) -> None:
        """Pipe `(key, value)` or `(key, value, timestamp)` tuples in order."""
        pipe = self.pipe
        for item in records:
            pipe(*item)

    def __repr__(self) -> str:
        return f"TestInputTopic({self.topic!r})"


class TestOutputTopic:
    """Reads (and consumes) what was sent to one topic, deserialized, in send order."""

    __test__ = False

    def __init__(self, driver: TopologyTestDriver, topic: str, key_serde: Serde,
                 value_serde: Serde) -> None:
        self.topic = topic
        self._queue = driver._outputs[topic]  # shared by every reader of this topic, like KS
        self._key_serde = key_serde
        self._value_serde = value_serde

    def read_record(self) -> Record:
        """The next record; raises LookupError when none is left."""
        if not self._queue:
            raise LookupError(f"no more records in {self.topic!r}")
        msg = self._queue.popleft()
        headers = msg.headers()
        ctx = SerdeContext(self.topic, msg.partition(), msg.offset(), headers, True)
        key = self._key_serde.deserialize(msg.key(), ctx)
        ctx.is_key = False
        value = self._value_serde.deserialize(msg.value(), ctx)
        return Record(key, value, msg.timestamp()[1], headers, self.topic, msg.partition(),
                      msg.offset())

    def read_key_value(self) -> tuple[Any, Any]:
        record = self.read_record()
        return record.key, record.value

    def read_value(self) -> Any:
        return self.read_record().value

    def read_records_to_list(self) -> list[Record]:
        return [self.read_record() for _ in range(len(self._queue))]

    def read_key_values_to_list(self) -> list[tuple[Any, Any]]:
        return [(r.key, r.value) for r in self.read_records_to_list()]

    def read_values_to_list(self) -> list[Any]:
        return [r.value for r in self.read_records_to_list()]

    def read_key_values_to_dict(self) -> dict[Any, Any]:
        """The final table state: the latest value per key; a tombstone (None) deletes it."""
        table: dict[Any, Any] = {}
        for record in self.read_records_to_list():
            if record.key is None:
                raise ValueError(f"{self.topic!r} has a record with a null key at "
                                 f"partition {record.partition} offset {record.offset}")
            if record.value is None:
                table.pop(record.key, None)
            else:
                table[record.key] = record.value
        return table

    def is_empty(self) -> bool:
        return not self._queue

    def queue_size(self) -> int:
        return len(self._queue)

    def __repr__(self) -> str:
        return f"TestOutputTopic({self.topic!r}, queued={len(self._queue)})"


def _headers(headers: HeadersLike | None) -> Headers | None:
    """Headers as confluent-kafka delivers them: a list of (str, bytes) pairs, or None."""
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]
