"""State stores: buffered, changelog-backed key-value stores on RocksDB or memory.

Layers, outermost first (each in its own module, each testable alone):
KeyValueStore (serdes) -> WriteBuffer (uncommitted writes) -> ChangeloggingLayer (changelog on
commit) -> backend (RocksDBBackend / MemoryBackend, bytes in key order).
"""

from kstream.state.builder import KeyValueStoreBuilder, kv_store
from kstream.state.errors import ChangelogWriteError, StateCorruptedError, StateRestoreError
from kstream.state.global_store import GlobalStore, GlobalStoreBuilder, global_store
from kstream.state.kv import KeyValueStore, TimestampedKeyValueStore
from kstream.state.restore import RestoreReport, StoreRestore, restore_stores
from kstream.state.rocksdb_memory import RocksDBMemory, configure_rocksdb
from kstream.state.session_store import SessionStore, SessionStoreBuilder, session_store
from kstream.state.window_store import WindowStore, WindowStoreBuilder, window_store

__all__ = [
    "kv_store",
    "global_store",
    "GlobalStore",
    "GlobalStoreBuilder",
    "KeyValueStoreBuilder",
    "KeyValueStore",
    "TimestampedKeyValueStore",
    "restore_stores",
    "RestoreReport",
    "StoreRestore",
    "StateCorruptedError",
    "StateRestoreError",
    "ChangelogWriteError",
    "RocksDBMemory",
    "configure_rocksdb",
    "window_store",
    "WindowStore",
    "WindowStoreBuilder",
    "session_store",
    "SessionStore",
    "SessionStoreBuilder",
]
