"""Point reads in a big RocksDB store under kstream's bounded memory: whole-file vs partitioned
index and filters.

    python bench/store_gets.py [--keys 6000000] [--gets 50000]

Loads `--keys` keys (16-byte values, in 10k-entry write batches, as commits write them) into a
store opened with kstream's shared options (one 64 MB block cache that also holds the
memtables), then times gets of present and absent keys in random order. The same run first
does it with the index and filter of each SST file kept whole, the layout kstream used before
(each block is as big as its file's keys need: megabytes once a store holds millions of keys),
then with kstream's current options (two-level index, partitioned filters, top level pinned).
No broker: this is RocksDB alone, so the baseline is the other table layout in the same process.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rocksdict import BlockBasedOptions, Rdict, WriteBatch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kstream.state.rocksdb_memory import RocksDBMemory, _create, _options  # noqa: E402


def whole_file_options(memory: RocksDBMemory) -> object:
    """kstream's options before partitioned index/filters (same cache, same budget)."""
    shared = _create(memory)
    table = BlockBasedOptions()
    table.set_block_cache(shared.cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)
    return _options(memory, table, shared.buffers, memory.memtable_bytes)


def measure(label: str, options: object, keys: int, gets: int, work: Path) -> None:
    path = work / label
    db = Rdict(str(path), options)  # type: ignore[arg-type]
    started = time.perf_counter()
    for start in range(0, keys, 10_000):
        batch = WriteBatch(raw_mode=True)
        for i in range(start, min(keys, start + 10_000)):
            batch.put(b"k%d" % i, b"\0" * 16)
        db.write(batch)
    load_s = time.perf_counter() - started
    rng = random.Random(7)
    for kind, sample in (("present", [b"k%d" % rng.randrange(keys) for _ in range(gets)]),
                         ("absent", [b"x%d" % rng.randrange(keys) for _ in range(gets)])):
        get = db.get
        started = time.perf_counter()
        for key in sample:
            get(key)
        per_get = (time.perf_counter() - started) / gets * 1e6
        print(f"| {label} | {keys:,} | {kind} | {per_get:,.1f} | {load_s:.1f} |", flush=True)
    db.close()
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=6_000_000)
    parser.add_argument("--gets", type=int, default=50_000)
    args = parser.parse_args()
    memory = RocksDBMemory()
    print("| table layout | keys | gets of | µs per get (wall) | load s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="kstream-bench-gets-") as work:
        measure("whole-file index/filter", whole_file_options(memory), args.keys, args.gets,
                Path(work))
        measure("partitioned (kstream)", _create(memory).data, args.keys, args.gets,
                Path(work))


if __name__ == "__main__":
    main()
