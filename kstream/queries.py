"""Interactive queries: read-only views of the stores this instance owns, from any thread.

`App.store(name)` returns a `KeyValueView`, `WindowView` or `SessionView`. How a read stays
correct while the engine loop runs in another thread:

* **Committed state only.** A view reads a store's backend beneath the task's write buffer (and
  its cache): what the last commit applied, never the writes of an open transaction. It decodes
  with the store's own serdes through the same store classes the processors use, built fresh
  per read over the backend, so the ordering and window layouts are the store's own.
* **No store is closed under a reader.** The engine publishes its tasks to `QueryableTasks`
  once they are restored and withdraws them before it closes any (rebalance, recovery,
  shutdown). A read holds a shared lock for its whole length; withdrawing takes it exclusively,
  so it waits for reads in flight. Results are therefore lists, never lazy iterators.
* **Memory stores are not read through their sorted index** (the engine thread settles it):
  point reads are dict lookups, scans work on a copy (`MemoryBackend.copy_items`). RocksDB
  reads are thread-safe.
* **Never a wrong or empty answer.** A key of a partition assigned here but still restoring,
  or any read between a revocation and the next assignment, raises StoreNotAvailableError
  ("retry"); a key of a partition owned by another instance raises NotOwnedHereError.

Which partition a key belongs to: its bytes under the store's key serde, murmur2 like Kafka's
default partitioner, over the partition count of the store's input topics; that is where the
repartition topic in front of an aggregation (and any Java or kstream producer) puts it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from kstream.errors import NotOwnedHereError, StoreNotAvailableError, UnknownStoreError
from kstream.runtime.partitioner import partition_for_key as _murmur2_partition
from kstream.state.backend import Backend, Entry
from kstream.state.buffer import WriteBuffer
from kstream.state.kv import KeyValueStore, TimestampedKeyValueStore
from kstream.state.memory import MemoryBackend
from kstream.state.session_store import SessionStore, SessionStoreBuilder
from kstream.state.window_store import (
    SegmentedStore,
    SegmentedStoreBuilder,
    TimestampedSerde,
    WindowStore,
)
from kstream.topology import SubTopology, Topology
from serdes import BytesSerde, Serde, SerdeContext, Windowed

if TYPE_CHECKING:
    from kstream.runtime.task import Task

__all__ = ["KeyValueView", "QueryableTasks", "SessionView", "StoreView", "WindowView",
           "partition_for_key"]

T = TypeVar("T")
TaskKey = tuple[int, int]  # (sub-topology index, partition)

READ_LOCK_TIMEOUT_S = 5.0  # a read waiting longer than this for a rebalance: "retry"
_FAR_FUTURE = 1 << 62
_FAR_PAST = -(1 << 62)

# Availability states, as `QueryableTasks.state` and the /ready endpoint name them.
NOT_RUNNING = "not_running"
REBALANCING = "rebalancing"
RESTORING = "restoring"
RUNNING = "running"


def partition_for_key(key_bytes: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record (murmur2, as the Java producer)."""
    return _murmur2_partition(key_bytes, partitions)


class _SharedLock:
    """Many readers or one writer; a waiting writer (the engine) goes before new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self, timeout: float) -> Iterator[None]:
        with self._cond:
            if not self._cond.wait_for(
                    lambda: not self._writing and not self._writers_waiting, timeout):
                raise StoreNotAvailableError("the instance is rebalancing; retry",
                                             reason=REBALANCING)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._writing and not self._readers)
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class QueryableTasks:
    """The engine's tasks as queries may see them: published once restored, withdrawn before
    they close. The engine thread calls `assigned`, `publish`, `withdraw` and `stopped`; any
    thread reads through `reading()`."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.subtopologies = topology.subtopologies()
        self._store_sub = {st: sub for sub in self.subtopologies for st in sub.stores}
        self._lock = _SharedLock()
        self._tasks: Mapping[TaskKey, Task] = MappingProxyType({})
        self._assigned: frozenset[TaskKey] = frozenset()
        self.state = NOT_RUNNING
        self.partition_counts: dict[str, int] = {}  # every topic's, from the start-up check
        self.epoch = 0  # bumped on every change of what is published

    # -- the engine thread ---------------------------------------------------------------------
    def assigned(self, tasks: Mapping[TaskKey, Task]) -> None:
        """Partitions were assigned; their tasks restore before anything is readable."""
        self._assigned = frozenset(tasks)
        self.state = RESTORING
        self.epoch += 1

    def publish(self, tasks: Mapping[TaskKey, Task]) -> None:
        """The tasks are restored and processing: readable from now on."""
        with self._lock.exclusive():
            self._tasks = MappingProxyType(dict(tasks))
            self._assigned = frozenset(tasks)
            self.state = RUNNING
            self.epoch += 1

    def withdraw(self) -> None:
        """Before tasks close: waits for reads in flight; later reads say "retry"."""
        if self.state == REBALANCING and not self._tasks:
            return
        with self._lock.exclusive():
            self._tasks = MappingProxyType({})
            self._assigned = frozenset()
            self.state = REBALANCING
            self.epoch += 1

    def stopped(self) -> None:
        self.withdraw()
        self.state = NOT_RUNNING

    # -- readers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[Mapping[TaskKey, Task]]:
        """The published tasks, guaranteed open for the `with` body."""
        with self._lock.shared(READ_LOCK_TIMEOUT_S):
            yield self._tasks

    @property
    def assignment(self) -> frozenset[TaskKey]:
        return self._assigned

    def sub_of_store(self, name: str) -> SubTopology:
        sub = self._store_sub.get(name)
        if sub is None:
            raise UnknownStoreError(f"no store named {name!r}; stores: "
                                    f"{', '.join(sorted(self._store_sub)) or 'none'}")
        return sub

    def store_partitions(self, name: str) -> int:
        """How many partitions (tasks) the store has: its input topics' partition count."""
        sub = self.sub_of_store(name)
        counts = [self.partition_counts[t] for t in sub.source_topics
                  if t in self.partition_counts]
        if not counts:
            raise StoreNotAvailableError("the instance has not started yet; retry",
                                         reason=NOT_RUNNING)
        return max(counts)

    def unavailable(self, store: str, partition: int) -> StoreNotAvailableError:
        """Why `partition` of `store` cannot be read here right now."""
        sub = self.sub_of_store(store)
        if (sub.index, partition) in self._assigned and self.state == RESTORING:
            return StoreNotAvailableError(
                f"store {store!r} partition {partition} is restoring here; retry",
                reason=RESTORING)
        if self.state != RUNNING:
            return StoreNotAvailableError(
                f"store {store!r} is not available while the instance is "
                f"{self.state.replace('_', ' ')}; retry",
                reason=self.state)
        return NotOwnedHereError(f"store {store!r} partition {partition} is owned by another "
                                 "instance", store, partition)


class StoreView:
    """Read-only access to one store across the tasks this instance owns (base class)."""

    def __init__(self, name: str, builder: Any, source: Callable[[], QueryableTasks]) -> None:
        self.name = name
        self._builder = builder
        self._source = source
        self.key_serde: Serde = builder.key_serde

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def partition_for_key(self, key: Any) -> int:
        """The partition (task) that holds `key`."""
        tasks = self._source()
        return self._partition(tasks, key)

    def _partition(self, tasks: QueryableTasks, key: Any) -> int:
        if key is None:
            raise ValueError(f"store {self.name!r}: keys must not be None")
        sub = tasks.sub_of_store(self.name)
        data = self.key_serde.serialize(key, SerdeContext(topic=sub.source_topics[0],
                                                          is_key=True))
        if data is None:
            raise ValueError(f"store {self.name!r}: key serde returned None for {key!r}")
        return partition_for_key(data, tasks.store_partitions(self.name))

    def approximate_count(self) -> int:
        """Entries in this instance's partitions of the store (an estimate for RocksDB)."""
        return sum(self.each_partition(lambda store: store.approximate_count()).values())

    def approximate_counts(self) -> dict[int, int]:
        """Per partition owned here: the approximate entry count."""
        return self.each_partition(lambda store: store.approximate_count())

    # -- reading -------------------------------------------------------------------------------
    def _read_key(self, key: Any, read: Callable[[Any], T]) -> T:
        tasks = self._source()
        partition = self._partition(tasks, key)
        sub = tasks.sub_of_store(self.name)
        with tasks.reading() as published:
            task = published.get((sub.index, partition))
            if task is None:
                raise tasks.unavailable(self.name, partition)
            return read(self._committed(task.stores[self.name]))

    def each_partition(self, read: Callable[[Any], T]) -> dict[int, T]:
        """`read(store)` for every partition of this store this instance owns, by partition,
        where `store` is a read-only store object over that partition's committed state
        (KeyValueStore, WindowStore or SessionStore of kstream.state). Runs under the read
        lock: `read` must return materialised results. StoreNotAvailableError while the
        instance is rebalancing or restoring."""
        tasks = self._source()
        sub = tasks.sub_of_store(self.name)
        with tasks.reading() as published:
            if tasks.state != RUNNING:
                raise tasks.unavailable(self.name, -1)
            return {p: read(self._committed(task.stores[self.name]))
                    for (index, p), task in sorted(published.items()) if index == sub.index}

    def _committed(self, store: Any) -> Any:
        """The store's committed state, through the store's own classes (see module doc)."""
        raise NotImplementedError


class KeyValueView(StoreView):
    """`get`, `range`, `prefix`, `all`, `approximate_count` over committed state.

    Scans cover the partitions this instance owns: in key order within each partition,
    partitions in order. `limit` caps how many entries a scan returns (None: all of them).
    """

    def get(self, key: Any) -> Any:
        """The committed value of `key`, or None when it has none.

        Raises NotOwnedHereError when another instance owns the key's partition,
        StoreNotAvailableError while it is restoring or the instance rebalances."""
        return self._read_key(key, lambda kv: kv.get(key))

    def range(self, from_key: Any = None, to_key: Any = None,
              limit: int | None = None) -> list[tuple[Any, Any]]:
        """(key, value) with from_key <= key <= to_key (None: unbounded) in key order."""
        return self._scan(lambda kv: kv.range(from_key, to_key), limit)

    def prefix(self, prefix: Any, limit: int | None = None) -> list[tuple[Any, Any]]:
        """Entries whose key starts with `prefix` (a tuple for the default ordered keys, else
        a key whose bytes are a byte prefix)."""
        return self._scan(lambda kv: kv.prefix_scan(prefix), limit)

    def all(self, limit: int | None = None) -> list[tuple[Any, Any]]:
        """Every (key, value) owned here, in key order per partition (at most `limit`)."""
        return self._scan(lambda kv: kv.all(), limit)

    def _scan(self, scan: Callable[[KeyValueStore], Iterator[tuple[Any, Any]]],
              limit: int | None) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for part in self.scan_partitions(scan, limit).values():
            out.extend(part)
        return out[:limit] if limit is not None else out

    def scan_partitions(self, scan: Callable[[KeyValueStore], Iterator[tuple[Any, Any]]],
                        limit: int | None = None) -> dict[int, list[tuple[Any, Any]]]:
        """`scan(committed store)` per partition owned here (at most `limit` entries each)."""
        return self.each_partition(lambda kv: _take(scan(kv), limit))

    def _committed(self, store: Any) -> KeyValueStore:
        assert isinstance(store, KeyValueStore)
        return _committed_kv(store, self._builder.key_serde, self._builder.value_serde)


class WindowView(StoreView):
    """`fetch(key, from_ms, to_ms)`, `fetch_all(from_ms, to_ms)`, `all` over committed
    windows: (Windowed(key, start, end), value) in start order per key."""

    def fetch(self, key: Any, from_ms: int = _FAR_PAST,
              to_ms: int = _FAR_FUTURE) -> list[tuple[Windowed, Any]]:
        """Windows of `key` whose start is in [from_ms, to_ms]."""
        return self._read_key(
            key, lambda ws: list(self._values(ws.fetch(key, from_ms, to_ms))))

    def fetch_all(self, from_ms: int = _FAR_PAST, to_ms: int = _FAR_FUTURE,
                  limit: int | None = None) -> list[tuple[Windowed, Any]]:
        """Windows of every key owned here whose start is in [from_ms, to_ms]."""
        return _flatten(self.fetch_all_by_partition(from_ms, to_ms, limit), limit)

    def fetch_all_by_partition(self, from_ms: int = _FAR_PAST, to_ms: int = _FAR_FUTURE,
                               limit: int | None = None
                               ) -> dict[int, list[tuple[Windowed, Any]]]:
        """`fetch_all`, per partition owned here (at most `limit` windows each)."""
        def scan(ws: WindowStore) -> list[tuple[Windowed, Any]]:
            return _take(((w, v) for w, v in self._values(ws.all())
                          if from_ms <= w.start <= to_ms), limit)

        return self.each_partition(scan)

    def all(self, limit: int | None = None) -> list[tuple[Windowed, Any]]:
        """Every window of every key owned here (at most `limit`): `fetch_all` unbounded."""
        return self.fetch_all(limit=limit)

    def _values(self, entries: Iterator[tuple[Windowed, Any]]) -> Iterator[tuple[Windowed, Any]]:
        timestamped = isinstance(self._builder.value_serde, TimestampedSerde)
        for window, value in entries:
            yield window, (value[1] if timestamped and value is not None else value)

    def _committed(self, store: Any) -> WindowStore:
        assert isinstance(store, SegmentedStore)
        b = self._builder
        return WindowStore(_committed_kv(store.kv, BytesSerde(), b.value_serde), b.key_serde,
                           b.retention_ms, b.segment_ms)


class SessionView(StoreView):
    """`find_sessions(key, earliest_end, latest_start)`, `fetch(key)`, `all` over committed
    sessions: (Windowed(key, start, end), value)."""

    def find_sessions(self, key: Any, earliest_end: int = _FAR_PAST,
                      latest_start: int = _FAR_FUTURE) -> list[tuple[Windowed, Any]]:
        """Sessions of `key` ending at or after `earliest_end` and starting at or before
        `latest_start` (Kafka Streams' findSessions), by end."""
        return self._read_key(key, lambda ss: ss.find_sessions(key, earliest_end, latest_start,
                                                               _FAR_FUTURE))

    def fetch(self, key: Any) -> list[tuple[Windowed, Any]]:
        """Every session of `key`, by start."""
        return self._read_key(key, lambda ss: ss.fetch(key))

    def all(self, limit: int | None = None) -> list[tuple[Windowed, Any]]:
        """Every session of every key owned here (at most `limit`)."""
        return _flatten(self.all_by_partition(limit), limit)

    def all_by_partition(self, limit: int | None = None
                         ) -> dict[int, list[tuple[Windowed, Any]]]:
        """Every session, per partition owned here (at most `limit` each)."""
        return self.each_partition(lambda ss: _take(ss.all(), limit))

    def _committed(self, store: Any) -> SessionStore:
        assert isinstance(store, SegmentedStore)
        b = self._builder
        return SessionStore(_committed_kv(store.kv, BytesSerde(), b.value_serde), b.key_serde,
                            b.retention_ms, b.segment_ms)


def view_for(name: str, topology: Topology,
             source: Callable[[], QueryableTasks]) -> KeyValueView | WindowView | SessionView:
    """The view class that fits the store's builder."""
    builder = topology.stores.get(name)
    if builder is None:
        raise UnknownStoreError(f"no store named {name!r}; stores: "
                                f"{', '.join(sorted(topology.stores)) or 'none'}")
    if isinstance(builder, SessionStoreBuilder):
        return SessionView(name, builder, source)
    if isinstance(builder, SegmentedStoreBuilder):
        return WindowView(name, builder, source)
    return KeyValueView(name, builder, source)


# -- committed reads beneath the write buffer --------------------------------------------------
class _CommittedReader:
    """What a WriteBuffer reads through: the backend alone. Read-only."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.get = backend.get
        self.approximate_count = backend.approximate_count

    def range(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        backend = self._backend
        if not isinstance(backend, MemoryBackend):
            return backend.range(lo, hi)
        items = _copy_items(backend)
        keys = sorted(k for k in items if (lo is None or k >= lo) and (hi is None or k < hi))
        return iter([(k, items[k]) for k in keys])

    def send(self, entries: list[Entry], collector: Any) -> None:
        raise TypeError("a query view is read-only")

    def apply(self, entries: list[Entry]) -> None:
        raise TypeError("a query view is read-only")

    def discard(self) -> None:
        return None


def _copy_items(backend: MemoryBackend) -> dict[bytes, bytes]:
    for _ in range(100):
        try:
            return backend.copy_items()
        except RuntimeError:  # "changed size during iteration": a GC pause let a write in
            continue
    raise StoreNotAvailableError("memory store busy; retry")


def _committed_kv(store: KeyValueStore, key_serde: Serde, value_serde: Serde) -> KeyValueStore:
    """A KeyValueStore over `store`'s backend alone (empty buffer, fresh cache)."""
    reader = _CommittedReader(store.backend)
    # The same class as the store: a timestamped store's entries start with their timestamp.
    view_class = type(store) if isinstance(store, TimestampedKeyValueStore) else KeyValueStore
    return view_class(store.name, WriteBuffer(reader, logged=False), store.backend,
                      key_serde, value_serde, changelog_topic=store.changelog_topic,
                      partition=store.partition, logging=False, task_dir=Path(store.task_dir))


def _take(entries: Any, limit: int | None) -> list[Any]:
    out: list[Any] = []
    for entry in entries:
        if limit is not None and len(out) >= limit:
            break
        out.append(entry)
    return out


def _flatten(parts: dict[int, list[T]], limit: int | None) -> list[T]:
    out: list[T] = []
    for part in parts.values():
        out.extend(part)
    return out[:limit] if limit is not None else out
