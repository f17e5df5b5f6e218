"""One RocksDB memory budget for the whole process, shared by every store of every task.

Without this each store instance (one per store per partition) gets its own block cache and
memtables, so memory grows with the partition count. Here all instances share one LRU block
cache, and a write buffer manager charges every memtable to that same cache, so RocksDB's
memory stays near `block_cache_bytes` however many partitions this process owns (the
approach of Kafka Streams' BoundedMemoryRocksDBConfig).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rocksdict import BlockBasedIndexType, BlockBasedOptions, Cache, Options, WriteBufferManager

META_CF = "kstream_meta"


@dataclass(frozen=True)
class RocksDBMemory:
    """Process-wide limits. Memtables are charged to the block cache, so the cache is the cap."""

    block_cache_bytes: int = 64 << 20
    write_buffer_bytes: int = 16 << 20      # all memtables of all stores together
    memtable_bytes: int = 4 << 20            # one memtable before it is flushed
    max_write_buffer_number: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.write_buffer_bytes <= self.block_cache_bytes:
            raise ValueError("write_buffer_bytes must be positive and fit in block_cache_bytes")
        if self.memtable_bytes <= 0 or self.max_write_buffer_number < 1:
            raise ValueError("memtable_bytes and max_write_buffer_number must be positive")


@dataclass(frozen=True)
class _Shared:
    memory: RocksDBMemory
    cache: Cache
    buffers: WriteBufferManager
    data: Options
    meta: Options


_lock = threading.Lock()
_shared: _Shared | None = None


def configure_rocksdb(memory: RocksDBMemory) -> None:
    """Set the process budget; only before the first RocksDB store opens."""
    global _shared
    with _lock:
        if _shared is not None and _shared.memory != memory:
            raise RuntimeError("RocksDB memory is already configured (a store is open); "
                               "call configure_rocksdb before building stores")
        if _shared is None:
            _shared = _create(memory)


def shared_options() -> tuple[Options, Options]:
    """(options for the data column family, options for the small offset column family)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = _create(RocksDBMemory())
        return _shared.data, _shared.meta


def block_cache_usage() -> int:
    """Bytes held by the shared cache (blocks plus charged memtables); 0 before first use."""
    return 0 if _shared is None else _shared.cache.get_usage()


def _create(memory: RocksDBMemory) -> _Shared:
    cache = Cache(memory.block_cache_bytes)
    buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
        memory.write_buffer_bytes, False, cache)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)  # index/filter memory counts against the cap
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)
    # Partitioned index and filters (what Kafka Streams' BoundedMemoryRocksDBConfig sets):
    # with a whole-file index and filter, a store of millions of keys has index/filter blocks
    # of megabytes that the bounded cache evicts, so each get re-read and checksummed one
    # (1.5 ms per get at 6M keys); partitions are metadata-block sized and the small top
    # level stays pinned.
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    data = _options(memory, table, buffers, memory.memtable_bytes)
    meta = _options(memory, table, buffers, 64 << 10)
    return _Shared(memory, cache, buffers, data, meta)


def _options(memory: RocksDBMemory, table: BlockBasedOptions, buffers: WriteBufferManager,
             memtable_bytes: int) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_block_based_table_factory(table)
    opts.set_write_buffer_manager(buffers)
    opts.set_write_buffer_size(memtable_bytes)
    opts.set_max_write_buffer_number(memory.max_write_buffer_number)
    opts.set_keep_log_file_num(2)
    opts.set_max_log_file_size(1 << 20)
    return opts
