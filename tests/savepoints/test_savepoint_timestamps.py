"""Savepoints keep an aggregate's timestamp (issue 15, point 4a): each store entry carries its
changelog record's timestamp, the aggregate's largest contributing time (KIP-258), through
create, a transform and a restore, so a restored app does not stamp its updates with the
restore time. Format 1 savepoints (no timestamps) still open and restore."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

from sp_apps import wordcount

from kstream.savepoint import Savepoint, restore_savepoint
from kstream.savepoint.format import read_kv, write_checksums
from kstream.testing import KafkaCluster, running_app, wait_until
from serdes import JsonSerde

_LEN = struct.Struct(">I")


def _stamps(kafka: KafkaCluster, topic: str) -> dict[str, int]:
    """Latest record timestamp per key."""
    return {r.key.decode(): r.timestamp for r in kafka.read_topic(topic)}  # type: ignore[union-attr]


def test_timestamps_survive_create_transform_and_restore(kafka: KafkaCluster,
                                                         topic_factory: Any,
                                                         tmp_path: Path) -> None:
    inp, out = topic_factory(2), topic_factory(2)
    app_id = kafka.unique_name("sp-ts")
    base = int(time.time() * 1000) - 86_400_000  # a day ago: event time, not wall clock
    # "fox" newest at base + 900, then an older record; "dog" only at base + 100.
    records = [("fox", base + 900), ("fox", base + 200), ("dog", base + 100)]
    app = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "one")
    with running_app(app):
        kafka.produce(inp, ((None, word.encode(), ts) for word, ts in records))
        wait_until(lambda: _stamps(kafka, out).keys() == {"fox", "dog"}
                   and len(list(kafka.read_topic(out))) == 3, 120, "counted")
    assert _stamps(kafka, out) == {"fox": base + 900, "dog": base + 100}
    sp_dir = app.savepoint(tmp_path / "sp")
    with Savepoint.open(sp_dir, topology=app.topology) as sp:
        assert sorted(ts for _k, _v, ts in sp.stamped_entries("word-counts")) == [
            base + 100, base + 900]
        migrated = tmp_path / "migrated"
        (sp.writer().map_values("word-counts", lambda _w, n: {"n": n}, value_serde=JsonSerde())
         .write(migrated))
    with Savepoint.open(migrated) as sp:
        assert sorted(ts for _k, _v, ts in sp.stamped_entries("word-counts")) == [
            base + 100, base + 900]
    upgraded = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "two",
                         shape="dict")
    restore_savepoint(migrated, upgraded)
    changelog = f"{app_id}-word-counts-changelog"
    assert sorted(_stamps(kafka, changelog).values()) == [base + 100, base + 900]
    with running_app(upgraded):
        kafka.produce(inp, [(None, b"fox", base + 50)])  # older than anything: still base+900
        wait_until(lambda: len(list(kafka.read_topic(out))) == 4, 120, "the update")
    last = list(kafka.read_topic(out))[-1]
    assert (last.key, int.from_bytes(last.value, "big"), last.timestamp) == (  # type: ignore[arg-type]
        b"fox", 3, base + 900)


def test_a_format_1_savepoint_reads_without_timestamps(tmp_path: Path) -> None:
    """Format 1 `.kv` files have no timestamps: entries read with -1 (unknown)."""
    root = tmp_path / "v1"
    (root / "stores" / "s").mkdir(parents=True)
    (root / "stores" / "s" / "0.kv").write_bytes(
        _LEN.pack(1) + b"k" + _LEN.pack(2) + b"v1" + _LEN.pack(2) + b"k2" + _LEN.pack(0))
    manifest = {
        "application_id": "a", "kstream_version": "0.1.0", "created_at": "x",
        "topology_description": "", "topology_fingerprint": "", "processing_guarantee":
        "exactly_once", "consistency": "stopped", "offsets": [], "pending": [],
        "input_partitions": {}, "format_version": 1,
        "stores": [{"name": "s", "kind": "kv", "key_serde": "serdes.BytesSerde",
                    "value_serde": "serdes.BytesSerde", "partitions": 1,
                    "changelog_topic": "a-s-changelog", "counts": {"0": 2},
                    "changelog_end": {"0": 2}, "retention_ms": None, "segment_ms": None}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(root, ["stores/s/0.kv", "manifest.json"])
    with Savepoint.open(root) as sp:
        assert list(sp.stamped_entries("s")) == [(b"k", b"v1", -1), (b"k2", b"", -1)]
        assert list(sp.raw_entries("s")) == [(b"k", b"v1"), (b"k2", b"")]
    assert list(read_kv(root / "stores" / "s" / "0.kv", timestamps=False))[0] == (b"k", b"v1", -1)
