"""The on-disk format of a savepoint: plain files anyone can read (documented in the README).

A savepoint is a directory::

    manifest.json                       what, where from, offsets, stores (see manifest.py)
    checksums.sha256                    `sha256sum -c` compatible: one line per other file
    stores/<store>/<partition>.kv       a store partition's changelog entries
    pending/<topic suffix>/<partition>.rec   records of a repartition topic not yet consumed

`.kv` files are a sequence of ``u32 key length | key | u32 value length | value | i64
timestamp`` (big-endian), the changelog's raw key and value bytes and the record timestamp, in
key order (tombstones are never written: a snapshot holds live entries only). The timestamp
matters to aggregations, whose results keep their largest contributing timestamp (KIP-258)
as the changelog record's timestamp; format 1 savepoints have none (read as -1, unknown).
`.rec` files are ``i64 timestamp | i32 key length | key | i32 value
length | value`` (length -1: null), in offset order. Raw bytes, not decoded values, so a
savepoint round-trips every serde exactly and window/session bounds stay in their keys.
`--archive` packs the directory into one uncompressed tar file (`DIR.tar`).
"""

from __future__ import annotations

import hashlib
import struct
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from kstream.errors import KStreamError

MANIFEST = "manifest.json"
CHECKSUMS = "checksums.sha256"
_LEN = struct.Struct(">I")
_TS = struct.Struct(">q")
NO_TIMESTAMP = -1  # an entry of a format 1 savepoint: its changelog record's time is unknown
_REC_HEAD = struct.Struct(">qi")
_I32 = struct.Struct(">i")


class SavepointError(KStreamError):
    """A savepoint cannot be read, does not fit the application, or may not be restored."""


def store_file(store: str, partition: int) -> str:
    return f"stores/{store}/{partition}.kv"


def pending_file(suffix: str, partition: int) -> str:
    return f"pending/{suffix}/{partition}.rec"


def write_kv(path: Path, entries: Iterable[tuple[bytes, bytes, int]]) -> int:
    """Write (key, value, timestamp) entries; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    pack, pack_ts = _LEN.pack, _TS.pack
    chunk: list[bytes] = []
    with open(path, "wb") as out:
        for key, value, timestamp in entries:
            chunk += (pack(len(key)), key, pack(len(value)), value, pack_ts(timestamp))
            count += 1
            if len(chunk) >= 40_000:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    return count


def read_kv(path: Path, timestamps: bool = True) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, timestamp) entries; `timestamps` False reads format 1 (NO_TIMESTAMP)."""
    data = path.read_bytes()
    pos, end = 0, len(data)
    unpack, unpack_ts = _LEN.unpack_from, _TS.unpack_from
    timestamp = NO_TIMESTAMP
    try:
        while pos < end:
            (n,) = unpack(data, pos)
            key = data[pos + 4:pos + 4 + n]
            pos += 4 + n
            (m,) = unpack(data, pos)
            value = data[pos + 4:pos + 4 + m]
            pos += 4 + m
            if timestamps:
                (timestamp,) = unpack_ts(data, pos)
                pos += 8
            if pos > end:
                raise struct.error("truncated")
            yield key, value, timestamp
    except struct.error:
        raise SavepointError(f"{path}: truncated or not a savepoint store file") from None


def write_records(path: Path, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "wb") as out:
        for timestamp, key, value in records:
            out.write(_REC_HEAD.pack(timestamp, -1 if key is None else len(key)))
            if key is not None:
                out.write(key)
            out.write(_I32.pack(-1 if value is None else len(value)))
            if value is not None:
                out.write(value)
            count += 1
    return count


def read_records(path: Path) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    data = path.read_bytes()
    pos, end = 0, len(data)
    try:
        while pos < end:
            timestamp, n = _REC_HEAD.unpack_from(data, pos)
            pos += 12
            key = None if n < 0 else data[pos:pos + n]
            pos += max(n, 0)
            (m,) = _I32.unpack_from(data, pos)
            pos += 4
            value = None if m < 0 else data[pos:pos + m]
            pos += max(m, 0)
            if pos > end:
                raise struct.error("truncated")
            yield timestamp, key, value
    except struct.error:
        raise SavepointError(f"{path}: truncated or not a savepoint record file") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(root: Path, files: Iterable[str]) -> None:
    lines = [f"{sha256_file(root / name)}  {name}\n" for name in sorted(files)]
    (root / CHECKSUMS).write_text("".join(lines))


def verify_checksums(root: Path) -> None:
    """Every file listed matches its sha256 and nothing listed is missing; SavepointError
    otherwise, naming the file."""
    listing = root / CHECKSUMS
    if not listing.exists():
        raise SavepointError(f"{root}: no {CHECKSUMS}: not a savepoint directory")
    listed = set()
    for line in listing.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name or ".." in Path(name).parts:
            raise SavepointError(f"{listing}: malformed line {line!r}")
        listed.add(name)
        path = root / name
        if not path.exists():
            raise SavepointError(f"savepoint {root}: {name} is missing")
        if sha256_file(path) != digest:
            raise SavepointError(f"savepoint {root}: {name} is corrupted (sha256 mismatch); "
                                 "restore from an intact copy")
    if MANIFEST not in listed:
        raise SavepointError(f"{listing} does not cover {MANIFEST}")


def archive(root: Path) -> Path:
    """Pack `root` into `root.tar` (uncompressed: store bytes rarely compress well) and
    return its path; the directory stays."""
    target = root.with_name(root.name + ".tar")
    with tarfile.open(target, "w") as tar:
        tar.add(root, arcname=root.name)
    return target


def unpack_if_archive(path: Path, into: Path) -> Path:
    """A savepoint directory from `path`: the directory itself, or an archive unpacked into
    `into`."""
    if path.is_dir():
        return path
    if not path.exists():
        raise SavepointError(f"savepoint {path} does not exist")
    try:
        with tarfile.open(path) as tar:
            names = {m.name.split("/", 1)[0] for m in tar.getmembers()}
            if len(names) != 1:
                raise SavepointError(f"{path}: an archive holds one savepoint directory")
            tar.extractall(into, filter="data")
    except tarfile.TarError as exc:
        raise SavepointError(f"{path}: not a savepoint directory or archive ({exc})") from None
    return into / names.pop()
