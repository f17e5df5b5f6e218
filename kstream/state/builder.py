"""Store builders: what a topology holds; each task builds its own store instance from one.

The builder's name is the store's identity: it names the changelog topic
(`<application id>-<name>-changelog`) and the directory under the task's state directory.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Any, Literal

from kstream._serde_defaults import DefaultSerde
from kstream.state.backend import Backend
from kstream.state.buffer import WriteBuffer
from kstream.state.changelog import ChangeloggingLayer, UnloggedLayer
from kstream.state.kv import KeyValueStore, TimestampedKeyValueStore
from kstream.state.memory import MemoryBackend
from kstream.state.rocksdb import PLAIN_LAYOUT, TIMESTAMPED_LAYOUT, RocksDBBackend
from serdes import JsonSerde, Serde, TupleKeySerde, resolve

BackendName = Literal["rocksdb", "memory"]
_BACKENDS = ("rocksdb", "memory")
log = logging.getLogger("kstream.state")
_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]+")


class KeyValueStoreBuilder:
    """Describes a key-value store; `build` makes one task's instance of it."""

    def __init__(self, name: str, key_serde: Serde, value_serde: Serde, backend: BackendName,
                 logging: bool, changelog_config: dict[str, str],
                 timestamped: bool = False) -> None:
        self.name = name
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.backend = backend
        self.logging = logging
        self.changelog_config = changelog_config
        # Entries carry the timestamp of their value (KIP-258;
        # kstream.state.kv.TimestampedKeyValueStore): the DSL's aggregations and tables.
        self.timestamped = timestamped

    def __repr__(self) -> str:
        return f"kv_store({self.name!r}, backend={self.backend!r}, logging={self.logging})"

    def changelog_topic(self, application_id: str) -> str:
        return f"{application_id}-{self.name}-changelog"

    def changelog_topic_config(self) -> dict[str, str]:
        """Topic configs for the changelog: compacted, plus what the user asked for."""
        return {"cleanup.policy": "compact", **self.changelog_config}

    def build(self, task_dir: Path, partition: int, changelog_topic: str) -> KeyValueStore:
        backend: Backend = (self._rocksdb(task_dir / self.name) if self.backend == "rocksdb"
                            else MemoryBackend())
        inner = (ChangeloggingLayer(backend, self.name, changelog_topic, partition,
                                    timestamped=self.timestamped)
                 if self.logging else UnloggedLayer(backend))
        store_class = TimestampedKeyValueStore if self.timestamped else KeyValueStore
        return store_class(self.name, WriteBuffer(inner, logged=self.logging), backend,
                           self.key_serde, self.value_serde, changelog_topic=changelog_topic,
                           partition=partition, logging=self.logging, task_dir=task_dir)

    def _rocksdb(self, path: Path) -> RocksDBBackend:
        """The store's database, in this builder's entry layout.

        Invariant: a database holds entries of one layout, named in its meta column family. One
        in the other layout (a store written before aggregations kept timestamps, or a layout
        changed by new code) is deleted: the changelog, whose values are plain in both layouts,
        restores it from the beginning.
        """
        layout = TIMESTAMPED_LAYOUT if self.timestamped else PLAIN_LAYOUT
        backend = RocksDBBackend(path)
        if backend.layout(default=PLAIN_LAYOUT) == layout:
            return backend
        if backend.committed_offset is not None or next(backend.range(None, None), None):
            log.warning("event=store_layout_changed store=%s path=%s layout=%s: the local "
                        "state is rebuilt from the changelog", self.name, path, layout)
            backend.close()
            shutil.rmtree(path)
            backend = RocksDBBackend(path)
        backend.set_layout(layout)
        return backend


def kv_store(name: str, *, key_serde: Any = None, value_serde: Any = None,
             backend: BackendName = "rocksdb", logging: bool = True,
             changelog_config: dict[str, str] | None = None,
             timestamped: bool = False) -> KeyValueStoreBuilder:
    """A key-value store builder.

    Keys default to the ordered tuple encoding, so range and prefix scans come out in key order;
    values default to JSON. Serdes may be names, classes or instances (see serdes.resolve).
    `timestamped=True` builds a TimestampedKeyValueStore (Kafka Streams'
    `Stores.timestampedKeyValueStoreBuilder`): each value keeps a timestamp, written with
    `put_with_timestamp(key, value, ts)` and read with `get_with_timestamp(key) -> (value, ts)
    | None`; its changelog records carry that timestamp, so a restore brings it back.
    """
    if not _LEGAL_NAME.fullmatch(name or "") or name in (".", ".."):
        raise ValueError(f"store name {name!r} must be non-empty and use only letters, digits, "
                         "'.', '_' and '-' (it names a topic and a directory)")
    if backend not in _BACKENDS:
        raise ValueError(f"store {name!r}: backend must be one of {_BACKENDS}, not {backend!r}")
    config = {str(k): str(v) for k, v in (changelog_config or {}).items()}
    return KeyValueStoreBuilder(
        name,
        DefaultSerde("key", TupleKeySerde(), f"store {name!r}") if key_serde is None
        else resolve(key_serde),
        DefaultSerde("value", JsonSerde(), f"store {name!r}") if value_serde is None
        else resolve(value_serde),
        backend, logging, config, timestamped)
