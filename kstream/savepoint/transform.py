"""Read a savepoint and write a transformed one: kstream's State Processor API.

    sp = Savepoint.open("sp-1", topology=old_app.topology)     # serdes from the old code
    for key, value in sp.entries("word-counts"):
        ...
    (sp.writer()
       .map_values("word-counts", lambda word, n: {"n": n}, value_serde=JsonSerde())
       .rename_store("old-name", "new-name")
       .drop_store("obsolete")
       .repartition_store("word-counts", 6)
       .write("sp-2"))

Entries are decoded with the store's serdes: those of the topology passed to `open` (the code
that wrote the savepoint), or, without one, serdes rebuilt from the class names in the
manifest (works for serdes that take no arguments). Keys are never re-encoded by a transform,
only values (`map_values`), so window and session bounds in the keys stay exact.
"""

from __future__ import annotations

import importlib
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

from kstream.runtime.partitioner import partition_for_key
from kstream.savepoint.format import (
    SavepointError,
    pending_file,
    read_kv,
    read_records,
    store_file,
    unpack_if_archive,
    verify_checksums,
    write_checksums,
    write_kv,
    write_records,
)
from kstream.savepoint.manifest import FORMAT_VERSION, Manifest, StoreEntry, serde_name
from kstream.state.window_store import OFFSET, decode_store_key
from kstream.topology import Topology
from serdes import Serde, Windowed


class Savepoint:
    """A savepoint on disk, checked (checksums) and read-only. Open with `Savepoint.open`."""

    def __init__(self, root: Path, manifest: Manifest, topology: Topology | None,
                 cleanup: Path | None = None) -> None:
        self.root = root
        self.manifest = manifest
        self._topology = topology
        self._cleanup = cleanup

    @classmethod
    def open(cls, path: str | Path, topology: Topology | None = None) -> Savepoint:
        """`Savepoint.open(DIR_or_ARCHIVE, topology=None) -> Savepoint`; verifies every
        file's sha256 first (SavepointError naming a corrupted or missing file)."""
        path = Path(path)
        cleanup = None
        if not path.is_dir():
            cleanup = Path(tempfile.mkdtemp(prefix="kstream-savepoint-"))
        try:
            root = unpack_if_archive(path, cleanup) if cleanup is not None else path
            verify_checksums(root)
            return cls(root, Manifest.read(root), topology, cleanup)
        except BaseException:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
            raise

    def close(self) -> None:
        """Remove the unpacked copy of an archive (nothing for a directory)."""
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None

    def __enter__(self) -> Savepoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def stores(self) -> list[StoreEntry]:
        """The stores, with kind, serde names, partition count and entry counts."""
        return list(self.manifest.stores)

    def raw_entries(self, store: str, partition: int | None = None
                    ) -> Iterator[tuple[bytes, bytes]]:
        """(changelog key bytes, value bytes) of one partition, or of all in partition order."""
        for key, value, _ in self.stamped_entries(store, partition):
            yield key, value

    def stamped_entries(self, store: str, partition: int | None = None
                        ) -> Iterator[tuple[bytes, bytes, int]]:
        """`raw_entries` with each changelog record's timestamp (an aggregate's largest
        contributing timestamp, KIP-258); -1 in a format 1 savepoint, which has none."""
        entry = self.manifest.store(store)
        parts = range(entry.partitions) if partition is None else [partition]
        stamped = self.manifest.format_version >= 2
        for p in parts:
            if p not in entry.counts:
                raise SavepointError(f"store {store!r} has no partition {p}")
            yield from read_kv(self.root / store_file(store, p), stamped)

    def entries(self, store: str, partition: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Decoded (key, value): a kv store's keys, or `Windowed(key, start, end)` for window
        and session stores."""
        entry = self.manifest.store(store)
        key_serde, value_serde = self.serdes(store)
        decode_key = key_decoder(entry.kind, key_serde)
        de_value = value_serde.deserialize
        for key, value in self.raw_entries(store, partition):
            yield decode_key(key), de_value(value)

    def serdes(self, store: str) -> tuple[Serde, Serde]:
        """(key serde, value serde) of a store: the topology's, else rebuilt by name."""
        entry = self.manifest.store(store)
        builder = (self._topology.stores.get(store) if self._topology is not None else None)
        if builder is not None:
            return builder.key_serde, builder.value_serde
        return serde_by_name(entry.key_serde), serde_by_name(entry.value_serde)

    def pending(self) -> Iterator[tuple[str, int, list[tuple[int, bytes | None, bytes | None]]]]:
        """(repartition topic suffix, partition, [(timestamp, key, value)]) not yet consumed."""
        for p in self.manifest.pending:
            yield p.suffix, p.partition, list(read_records(
                self.root / pending_file(p.suffix, p.partition)))

    def writer(self) -> SavepointWriter:
        """A writer producing a transformed copy of this savepoint."""
        return SavepointWriter(self)


def key_decoder(kind: str, key_serde: Serde) -> Callable[[bytes], Any]:
    de = key_serde.deserialize
    if kind == "window":
        def window_key(data: bytes) -> Windowed:
            kb, start, end = decode_store_key(data)
            return Windowed(de(kb), start, end)
        return window_key
    if kind == "session":
        def session_key(data: bytes) -> Windowed:
            kb, end, start = decode_store_key(data)
            return Windowed(de(kb), start, end)
        return session_key
    return de


INDEX_SUFFIX = "-pending-final"
_HEAD = struct.Struct(">QI")
_TIMES = struct.Struct(">QQ")


def default_partition_key(kind: str, index: bool = False) -> Callable[[bytes], bytes]:
    """The bytes a producer partitions by: a kv store's key, a window/session key's inner key
    (the store key serde's bytes are the record key bytes of the topic the store's task reads);
    for the `<store>-pending-final` index of an emit="final" aggregation (`index`), the inner
    key of the window store key after its 8-byte close time."""
    if index:
        return lambda data: decode_store_key(data[8:])[0]
    if kind in ("window", "session"):
        return lambda data: decode_store_key(data)[0]
    return lambda data: data


def index_of(manifest: Manifest, store: str) -> str | None:
    """The window or session store whose emit="final" index `store` is, else None."""
    if not store.endswith(INDEX_SUFFIX):
        return None
    base = store[:-len(INDEX_SUFFIX)]
    if any(s.name == base and s.kind in ("window", "session") for s in manifest.stores):
        return base
    return None


def resegment_key(data: bytes, segment_ms: int) -> bytes:
    """A window or session store key laid out for `segment_ms` (the segment is `t1 //
    segment_ms`, see kstream.state.window_store): a store whose retention, and so segment
    interval, changed finds its windows where it looks for them."""
    kb, t1, t2 = decode_store_key(data)
    return (_HEAD.pack(t1 // segment_ms + OFFSET, len(kb)) + kb
            + _TIMES.pack(t1 + OFFSET, t2 + OFFSET))


def resegment_index_key(data: bytes, segment_ms: int) -> bytes:
    """An emit="final" index key (close time, then a window store key) for `segment_ms`."""
    return data[:8] + resegment_key(data[8:], segment_ms)


def serde_by_name(name: str) -> Serde:
    """Rebuild a serde from `module.Class` or `module.Class(module.Inner)` (no-arg classes)."""
    inner = None
    if name.endswith(")") and "(" in name:
        name, _, rest = name.partition("(")
        inner = serde_by_name(rest[:-1])
    module, _, cls_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        serde: Serde = cls(inner) if inner is not None else cls()
        return serde
    except (ImportError, AttributeError, TypeError) as exc:
        raise SavepointError(f"cannot rebuild serde {name!r} ({exc}): open the savepoint with "
                             "the topology that wrote it (Savepoint.open(dir, topology=...))"
                             ) from None


class SavepointWriter:
    """Collects transformations of one savepoint and writes the result as a new one.

    Each method returns the writer, so calls chain; nothing is read until `write`.
    """

    def __init__(self, source: Savepoint) -> None:
        self.source = source
        self.manifest = deepcopy(source.manifest)
        self.manifest.format_version = FORMAT_VERSION  # what `write` writes
        self._origin = {s.name: s.name for s in self.manifest.stores}  # new name -> source
        self._maps: dict[str, list[tuple[Callable[[Any, Any], Any], Serde | None]]] = {}
        self._repartition: dict[str, tuple[int, Callable[[bytes], bytes]]] = {}

    def rename_store(self, old: str, new: str) -> SavepointWriter:
        """Store `old` becomes `new` (the restore matches stores by name)."""
        entry = self.manifest.store(old)
        if any(s.name == new for s in self.manifest.stores):
            raise SavepointError(f"a store named {new!r} already exists")
        entry.name = new
        tables: list[dict[str, Any]] = [self._origin, self._maps, self._repartition]
        for table in tables:
            if old in table:
                table[new] = table.pop(old)
        return self

    def drop_store(self, name: str) -> SavepointWriter:
        """Leave store `name` out of the new savepoint."""
        self.manifest.stores.remove(self.manifest.store(name))
        tables: list[dict[str, Any]] = [self._origin, self._maps, self._repartition]
        for table in tables:
            table.pop(name, None)
        return self

    def map_values(self, store: str, fn: Callable[[Any, Any], Any],
                   value_serde: Serde | None = None) -> SavepointWriter:
        """Every value becomes `fn(key, value)` (decoded key and value; None drops the entry),
        encoded with `value_serde` (default: the store's current value serde): a schema
        migration. Maps run in the order given."""
        self.manifest.store(store)
        self._maps.setdefault(store, []).append((fn, value_serde))
        if value_serde is not None:
            self.manifest.store(store).value_serde = serde_name(value_serde)
        return self

    def repartition_store(self, store: str, partitions: int,
                          partition_key: Callable[[bytes], bytes] | None = None
                          ) -> SavepointWriter:
        """Spread a store's entries over `partitions` partitions as the producer would:
        murmur2 of `partition_key(changelog key bytes)` (default: the key bytes, a window or
        session key's inner key bytes, or for an emit="final" index `<store>-pending-final`
        the inner key of the window it holds). Offsets are left as they are: grow the input
        topics to the same count before the restore (their existing records keep their
        partitions and offsets; the restore reads the new partitions from auto_offset_reset
        and spreads unconsumed repartition records by key)."""
        if partitions <= 0:
            raise SavepointError(f"partitions must be positive, got {partitions}")
        entry = self.manifest.store(store)
        index = index_of(self.manifest, store) is not None
        self._repartition[store] = (partitions,
                                    partition_key or default_partition_key(entry.kind, index))
        return self

    def write(self, directory: str | Path) -> Path:
        """Write the transformed savepoint into the new directory DIR; returns it."""
        root = Path(directory)
        if root.exists():
            raise SavepointError(f"{root} already exists: a savepoint goes into a new directory")
        tmp = root.with_name(f".{root.name}.{uuid.uuid4().hex[:8]}.partial")
        tmp.mkdir(parents=True)
        try:
            files = []
            for entry in self.manifest.stores:
                files += self._write_store(tmp, entry)
            for p in self.manifest.pending:
                name = pending_file(p.suffix, p.partition)
                write_records(tmp / name,
                              read_records(self.source.root / name))
                files.append(name)
            self.manifest.write(tmp)
            write_checksums(tmp, [*files, "manifest.json"])
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return root

    def _write_store(self, tmp: Path, entry: StoreEntry) -> list[str]:
        source_name = self._origin[entry.name]
        raw: Iterator[tuple[bytes, bytes, int]] = self.source.stamped_entries(source_name)
        maps = self._maps.get(entry.name)
        if maps:
            raw = self._mapped(source_name, entry.kind, raw, maps)
        partitions, key_of = self._repartition.get(entry.name, (entry.partitions, None))
        if key_of is None:
            # Same partitioning: copy partition by partition.
            files = []
            for p in range(entry.partitions):
                part = self.source.stamped_entries(source_name, p)
                if maps:
                    part = self._mapped(source_name, entry.kind, part, maps)
                name = store_file(entry.name, p)
                entry.counts[p] = write_kv(tmp / name, part)
                files.append(name)
            return files
        buckets: list[list[tuple[bytes, bytes, int]]] = [[] for _ in range(partitions)]
        for key, value, timestamp in raw:
            buckets[partition_for_key(key_of(key), partitions)].append((key, value, timestamp))
        entry.partitions = partitions
        entry.counts, entry.changelog_end = {}, {}
        files = []
        for p, bucket in enumerate(buckets):
            name = store_file(entry.name, p)
            entry.counts[p] = write_kv(tmp / name, sorted(bucket))
            files.append(name)
        return files

    def _mapped(self, store: str, kind: str, raw: Iterator[tuple[bytes, bytes, int]],
                maps: list[tuple[Callable[[Any, Any], Any], Serde | None]]
                ) -> Iterator[tuple[bytes, bytes, int]]:
        key_serde, value_serde = self.source.serdes(store)
        decode_key = key_decoder(kind, key_serde)
        de_value = value_serde.deserialize
        out_serde = value_serde
        for _, serde in maps:
            out_serde = serde or out_serde
        for key, value, timestamp in raw:  # a mapped value keeps its entry's timestamp
            decoded = de_value(value)
            dkey = decode_key(key)
            for fn, _ in maps:
                decoded = fn(dkey, decoded)
                if decoded is None:
                    break
            if decoded is None:
                continue
            data = out_serde.serialize(decoded)
            if data is not None:
                yield key, data, timestamp
