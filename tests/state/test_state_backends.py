"""Backend contract, for RocksDB and memory: sorted bytes, atomic writes with the offset."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kstream.state.backend import Backend, prefix_end, successor
from kstream.state.memory import MemoryBackend
from kstream.state.rocksdb import RocksDBBackend
from kstream.state.rocksdb_memory import RocksDBMemory, configure_rocksdb, shared_options
from kstream.testing import wait_until


@pytest.fixture(params=["rocksdb", "memory"])
def backend(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[Backend]:
    b: Backend = RocksDBBackend(state_dir / "s") if request.param == "rocksdb" else MemoryBackend()
    yield b
    b.close()


def test_get_write_and_ordered_range(backend: Backend) -> None:
    backend.write([(b"b", b"2"), (b"a", b"1"), (b"c", b"3"), (b"ca", b"4")], 7)
    assert backend.committed_offset == 7
    assert backend.get(b"a") == b"1" and backend.get(b"zz") is None
    assert list(backend.range(None, None)) == [
        (b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"ca", b"4")]
    assert list(backend.range(b"b", b"ca")) == [(b"b", b"2"), (b"c", b"3")]
    assert list(backend.range(b"b", None)) == [(b"b", b"2"), (b"c", b"3"), (b"ca", b"4")]
    assert list(backend.range(None, b"b")) == [(b"a", b"1")]
    assert list(backend.range(b"c", prefix_end(b"c"))) == [(b"c", b"3"), (b"ca", b"4")]
    backend.write([(b"b", None), (b"a", b"9")], None)
    assert backend.committed_offset == 7  # None leaves the offset alone
    assert list(backend.range(None, successor(b"c"))) == [(b"a", b"9"), (b"c", b"3")]
    assert backend.approximate_count() in (3, 4)  # RocksDB estimates


def test_restore_sink_applies_with_offset(backend: Backend) -> None:
    backend.write([(b"gone", b"x")], 1)
    sink = backend.begin_restore()
    sink.put(b"k1", b"v1")
    sink.put(b"k2", b"v2")
    sink.delete(b"gone")
    backend.finish_restore(sink, 41)
    assert backend.committed_offset == 41
    assert list(backend.range(None, None)) == [(b"k1", b"v1"), (b"k2", b"v2")]


def test_prefix_end() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") is None and prefix_end(b"") is None


def test_rocksdb_keeps_data_and_offset_across_reopen(state_dir: Path) -> None:
    db = RocksDBBackend(state_dir / "s")
    db.write([(b"k", b"v")], 12)
    db.close()
    db.close()  # idempotent
    again = RocksDBBackend(state_dir / "s")  # the lock was released by close
    try:
        assert again.committed_offset == 12
        assert list(again.range(None, None)) == [(b"k", b"v")]  # the offset is not data
    finally:
        again.close()
    with pytest.raises(RuntimeError, match="closed"):
        db.get(b"k")


def test_rocksdb_stores_share_one_memory_budget(state_dir: Path) -> None:
    first = shared_options()
    dbs = [RocksDBBackend(state_dir / f"p{i}") for i in range(8)]
    try:
        assert all(a is b for a, b in zip(shared_options(), first, strict=True))
        configure_rocksdb(RocksDBMemory())  # same budget: accepted
        with pytest.raises(RuntimeError, match="already configured"):
            configure_rocksdb(RocksDBMemory(block_cache_bytes=1 << 30))
    finally:
        for db in dbs:
            db.close()
    with pytest.raises(ValueError):
        RocksDBMemory(block_cache_bytes=1 << 20, write_buffer_bytes=2 << 20)


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from kstream.state.rocksdb import RocksDBBackend
    db = RocksDBBackend(Path(sys.argv[1]))
    progress = Path(sys.argv[2])
    for batch in range(1, 10_000_000):
        db.write([(b"k%04d" % i, b"%d" % batch) for i in range(200)], batch)
        if batch == 20:
            progress.write_text("running")
""")


def test_rocksdb_data_and_offset_survive_a_kill_together(state_dir: Path) -> None:
    """SIGKILL mid-stream: every key must hold exactly the batch the stored offset names."""
    progress = state_dir / "progress"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(state_dir / "s"), str(progress)])
    try:
        wait_until(progress.exists, 60, "the writer to get going")
    finally:
        proc.kill()
        proc.wait(30)
    db = RocksDBBackend(state_dir / "s")
    try:
        offset = db.committed_offset
        assert offset is not None and offset >= 20
        values = {v for _, v in db.range(None, None)}
        assert values == {b"%d" % offset}
    finally:
        db.close()
