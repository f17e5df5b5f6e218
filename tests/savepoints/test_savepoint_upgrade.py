"""Upgrade through a savepoint (change the aggregate's value shape) and refused restores."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sp_apps import wordcount
from test_savepoint_fork import final_counts, lines, live_counts, model

from kstream.savepoint import Savepoint, SavepointError, restore_savepoint
from kstream.savepoint.format import write_checksums
from kstream.testing import KafkaCluster, running_app, wait_until
from serdes import JsonSerde


def kafka_footprint(kafka: KafkaCluster, app_id: str, inp: str) -> tuple[list[str], Any]:
    """Topics named after `app_id`, and the group's committed offsets on `inp`."""
    topics = sorted(t for t in kafka.admin.list_topics(timeout=10).topics
                    if t.startswith(app_id))
    return topics, kafka.committed_offsets(app_id, inp)


def test_upgrade_value_shape_and_refusals(kafka: KafkaCluster, topic_factory: Any,
                                          tmp_path: Path) -> None:
    inp, out = topic_factory(3), topic_factory(3)
    app_id = kafka.unique_name("sp-up")
    first, second = lines(3000, 3), lines(2000, 4)
    old = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "old")
    with running_app(old):
        kafka.produce(inp, ((None, line.encode()) for line in first))
        wait_until(lambda: live_counts(old) == dict(model(first)), 120, "part one counted")
        # (d) live members: restoring into a running app's group is refused.
        with pytest.raises(SavepointError, match="live member"):
            restore_savepoint(old.savepoint(tmp_path / "live"), old)
    sp_dir = old.savepoint(tmp_path / "sp")   # stopped: the snapshot of the final commit
    before = kafka_footprint(kafka, app_id, inp)

    # (d) refusals write nothing to Kafka: a fresh target id and the original stay untouched.
    target = kafka.unique_name("sp-bad")
    new = wordcount(target, kafka.bootstrap_servers, inp, out, tmp_path / "new", shape="dict")
    corrupted = tmp_path / "corrupted"
    shutil.copytree(sp_dir, corrupted)
    store_file = next((corrupted / "stores" / "word-counts").glob("*.kv"))
    data = bytearray(store_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store_file.write_bytes(bytes(data))
    with pytest.raises(SavepointError, match="corrupted"):
        restore_savepoint(corrupted, new)
    other_major = tmp_path / "other-major"
    shutil.copytree(sp_dir, other_major)
    manifest = other_major / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"kstream_version": "0.',
                                                     '"kstream_version": "7.'))
    write_checksums(other_major, [str(p.relative_to(other_major))
                                  for p in other_major.rglob("*") if p.is_file()
                                  and p.name != "checksums.sha256"])
    with pytest.raises(SavepointError, match="major version"):
        restore_savepoint(other_major, new)
    renamed = tmp_path / "renamed"
    Savepoint.open(sp_dir).writer().rename_store("word-counts", "counts-v0").write(renamed)
    with pytest.raises(SavepointError, match="do(es)? not match"):
        restore_savepoint(renamed, new)
    assert kafka_footprint(kafka, target, inp) == ([], kafka.committed_offsets(target, inp))
    assert all(o < 0 for o in kafka.committed_offsets(target, inp).values())
    assert kafka_footprint(kafka, app_id, inp) == before

    # (b) upgrade: counts become {"n": count}; restore into the new code, same application id.
    migrated = tmp_path / "migrated"
    with Savepoint.open(sp_dir, topology=old.topology) as sp:
        (sp.writer().map_values("word-counts", lambda _word, n: {"n": n},
                                value_serde=JsonSerde())
         .write(migrated))
    upgraded = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "old",
                         shape="dict")
    restore_savepoint(migrated, upgraded)
    expected = dict(model(first + second))
    with running_app(upgraded):
        kafka.produce(inp, ((None, line.encode()) for line in second))
        wait_until(lambda: live_counts(upgraded) == expected, 120, "the upgraded app to finish")
    assert final_counts(kafka, out) == expected
