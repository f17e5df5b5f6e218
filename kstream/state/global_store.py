"""Global stores: every instance holds the whole of one topic, read-only to processors.

The source topic is the changelog (no topic of its own): a bootstrap reads every partition
from the checkpoint to the end (kstream.state.restore, one `PartitionRestore` per partition),
then the engine applies new records as they arrive (`GlobalStore.apply`). Processors only
read: the topic is the one writer, as in Kafka Streams' GlobalKTable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from kstream._serde_defaults import effective
from kstream.state.backend import Entry, RestoreSink
from kstream.state.global_backend import GlobalBackend, MemoryGlobalBackend, RocksDBGlobalBackend
from kstream.state.scans import OrderedScans
from serdes import Serde, SerdeContext, TupleKeySerde

# Decoded values of recent lookups. A global table is a lookup table read on every record:
# a larger cache than task stores have, emptied at once when full (an eviction scan of the
# oldest entry costs O(deleted entries) in a dict and showed as the top cost in profiles).
# 262,144 entries: a catalogue of 100k products fits whole (at 65,536 a third of uniform
# lookups missed and went to RocksDB and the decoder: 0.58x of a raw dict loop instead of
# the 0.6x asked for). Memory: the decoded values, ~50 MB for 100k small JSON objects.
CACHE_ENTRIES = 262_144
_MISSING = object()
_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]+")


class ReadOnlyStoreError(TypeError):
    """A processor tried to write a global store (its topic is its only writer)."""


class GlobalStoreBuilder:
    """Describes a global store: `name`, the `topic` it mirrors, serdes and backend."""

    logging = False  # the source topic is the changelog: no `<app>-<name>-changelog`

    def __init__(self, name: str, topic: str, key_serde: Serde, value_serde: Serde,
                 backend: Literal["rocksdb", "memory"] = "rocksdb") -> None:
        if not _LEGAL_NAME.fullmatch(name or "") or name in (".", ".."):
            raise ValueError(f"global store name {name!r} must be non-empty and use only "
                             "letters, digits, '.', '_' and '-' (it names a directory)")
        if backend not in ("rocksdb", "memory"):
            raise ValueError(f"global store {name!r}: backend must be 'rocksdb' or 'memory'")
        self.name = name
        self.topic = topic
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.backend = backend

    def __repr__(self) -> str:
        return f"global_store({self.name!r}, topic={self.topic!r}, backend={self.backend!r})"

    def build(self, state_root: Path) -> GlobalStore:
        """The instance's store, under `<state_root>/global/<name>` (RocksDB)."""
        directory = state_root / "global" / self.name
        backend: GlobalBackend = (RocksDBGlobalBackend(directory) if self.backend == "rocksdb"
                                  else MemoryGlobalBackend())
        return GlobalStore(self, backend, directory)


class GlobalStore(OrderedScans):
    """Read-only key-value view of the whole topic, plus the engine's update hooks.

    Point reads go through a bounded cache of decoded values; invariant: the cache holds only
    what `get` would decode from the backend, so every update clears it (updates of a global
    table are rare next to lookups).
    """

    def __init__(self, spec: GlobalStoreBuilder, backend: GlobalBackend, directory: Path) -> None:
        self.name = spec.name
        self.topic = spec.topic
        self.backend = backend
        self.directory = directory
        self._ordered_keys = isinstance(effective(spec.key_serde), TupleKeySerde)
        self._key_ctx = SerdeContext(topic=spec.topic, is_key=True)
        self._value_ctx = SerdeContext(topic=spec.topic)
        self._ser_key, self._de_key = spec.key_serde.serialize, spec.key_serde.deserialize
        self._de_value = spec.value_serde.deserialize
        self._cache: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"GlobalStore({self.name!r}, topic={self.topic!r})"

    # -- reads (processors) ----------------------------------------------------------------------
    def get(self, key: Any) -> Any:
        """The current value of `key` in the topic, None when absent or deleted."""
        ck: Any = key if type(key) is str else (type(key), key)
        try:
            value = self._cache.get(ck, _MISSING)
        except TypeError:
            ck, value = _MISSING, _MISSING
        if value is not _MISSING:
            return value
        data = self.backend.get(self._key_bytes(key))
        value = None if data is None else self._de_value(data, self._value_ctx)
        if ck is not _MISSING:
            cache = self._cache
            if len(cache) >= CACHE_ENTRIES:
                cache.clear()
            cache[ck] = value
        return value

    def approximate_count(self) -> int:
        return self.backend.approximate_count()

    def put(self, key: Any, value: Any) -> None:
        """Refused: a global store changes only through its topic."""
        raise ReadOnlyStoreError(f"global store {self.name!r} is read-only: write to its topic "
                                 f"{self.topic!r} instead")

    def delete(self, key: Any) -> None:
        """Refused, as put."""
        self.put(key, None)

    def _decoded(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[Any, Any]]:
        de_key, de_value = self._de_key, self._de_value
        for key, value in self.backend.range(lo, hi):
            yield de_key(key, self._key_ctx), de_value(value, self._value_ctx)

    def _key_bytes(self, key: Any) -> bytes:
        if key is None:
            raise ValueError(f"global store {self.name!r}: keys must not be None")
        data = self._ser_key(key, self._key_ctx)
        if data is None:
            raise ValueError(f"global store {self.name!r}: key serde returned None for {key!r}")
        return data

    # -- updates (the engine, the test driver) -----------------------------------------------------
    def offsets(self) -> dict[int, int]:
        """The checkpoint: partition -> offset of the last record applied."""
        return self.backend.offsets()

    def apply(self, entries: list[Entry], offsets: dict[int, int]) -> None:
        """Records read from the topic, with the offsets they reach, in one atomic write.
        Records without a key cannot be looked up and are left out by the caller."""
        self.backend.write(entries, offsets)
        self._cache.clear()

    def invalidate(self) -> None:
        """The backend changed underneath (a restore batch): drop cached values."""
        self._cache.clear()

    def restore_targets(self, partitions: int) -> list[PartitionRestore]:
        """One restore target per source partition (see kstream.state.restore)."""
        return [PartitionRestore(self, p) for p in range(partitions)]

    def close(self) -> None:
        self._cache.clear()
        self.backend.close()


class _PartitionBackend:
    """The restore's view of one partition's checkpoint in the shared backend."""

    def __init__(self, store: GlobalStore, partition: int) -> None:
        self._store = store
        self._partition = partition
        self.path = store.backend.path

    @property
    def committed_offset(self) -> int | None:
        return self._store.offsets().get(self._partition)

    def begin_restore(self) -> RestoreSink:
        return self._store.backend.begin_restore()

    def finish_restore(self, sink: RestoreSink, offset: int) -> None:
        self._store.backend.finish_restore(sink, self._partition, offset)
        self._store.invalidate()


class PartitionRestore:
    """One partition of a global store's topic, restored like a changelog partition."""

    logging = True  # its "changelog" (the source topic) is read

    def __init__(self, store: GlobalStore, partition: int) -> None:
        self.name = store.name
        self.changelog_topic = store.topic
        self.partition = partition
        self.task_dir = store.directory
        self.backend = _PartitionBackend(store, partition)


def global_store(name: str, topic: str, *, key_serde: Any = None, value_serde: Any = None,
                 backend: Literal["rocksdb", "memory"] = "rocksdb") -> GlobalStoreBuilder:
    """A global store builder for `Topology.add_global_store`: the whole of `topic` in every
    instance, readable by any processor with `context.get_store(name)`. Serdes as in
    `serdes.resolve` (not given: the app's default serdes, else keys in the ordered tuple
    encoding and JSON values)."""
    from kstream._serde_defaults import DefaultSerde
    from serdes import JsonSerde, resolve

    where = f"global store {name!r}"
    return GlobalStoreBuilder(
        name, topic,
        DefaultSerde("key", TupleKeySerde(), where) if key_serde is None else resolve(key_serde),
        DefaultSerde("value", JsonSerde(), where) if value_serde is None
        else resolve(value_serde),
        backend)
