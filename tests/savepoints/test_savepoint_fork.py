"""Savepoint a running exactly-once word count mid-stream and fork it (issue 17)."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from sp_apps import wordcount

from kstream.savepoint import Savepoint, create_savepoint, restore_savepoint
from kstream.testing import KafkaCluster, running_app, wait_until

WORD = re.compile(r"[a-z0-9']+")
PHRASES = ["the quick brown fox", "jumps over the lazy dog", "kafka streams in python",
           "exactly once or not at all", "the fox and the dog", "stream processing is fun"]


def lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(PHRASES)} w{rng.randrange(300)}" for _ in range(count)]


def model(all_lines: list[str]) -> Counter[str]:
    return Counter(w for line in all_lines for w in WORD.findall(line.lower()))


def committed(kafka: KafkaCluster, group: str, topic: str) -> int:
    return sum(max(0, o) for o in kafka.committed_offsets(group, topic).values())


def final_counts(kafka: KafkaCluster, topic: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for rec in kafka.read_topic(topic):
        out[rec.key.decode()] = int.from_bytes(rec.value, "big", signed=True)
    return out


def live_counts(app: Any) -> dict[str, int]:
    """The running app's committed word counts (interactive query); {} while unavailable."""
    from kstream.errors import StoreNotAvailableError

    try:
        return {k: (v if isinstance(v, int) else v["n"])
                for k, v in app.store("word-counts").all()}
    except StoreNotAvailableError:
        return {}


def store_counts(app: Any, tmp: Path, name: str) -> dict[str, int]:
    """The app's word-counts store, read through a savepoint (stopped or running app)."""
    path = create_savepoint(app, tmp / name)
    with Savepoint.open(path, topology=app.topology) as sp:
        return {k: (v if isinstance(v, int) else v["n"]) for k, v in sp.entries("word-counts")}


def saved_counts(path: Path, topology: Any) -> Counter[str]:
    """What a word-count savepoint says has been counted: the store plus the words still in
    flight in the repartition topic (counted once the restored app reads them)."""
    with Savepoint.open(path, topology=topology) as sp:
        counts: Counter[str] = Counter()
        for word, value in sp.entries("word-counts"):
            counts[word] = value if isinstance(value, int) else value["n"]
        for _suffix, _partition, records in sp.pending():
            counts.update(key.decode() for _ts, key, _value in records if key is not None)
        return +counts


def test_fork_running_word_count_mid_stream(kafka: KafkaCluster, topic_factory: Any,
                                            tmp_path: Path) -> None:
    inp, out, fork_out = topic_factory(3), topic_factory(3), topic_factory(3)
    original_id, fork_id = kafka.unique_name("sp-orig"), kafka.unique_name("sp-fork")
    first, second = lines(6000, 1), lines(4000, 2)
    original = wordcount(original_id, kafka.bootstrap_servers, inp, out, tmp_path / "a")
    with running_app(original):
        kafka.produce(inp, ((None, line.encode()) for line in first))
        wait_until(lambda: committed(kafka, original_id, inp) >= 1500, 90,
                   "the original to process part of the input")
        sp_dir = original.savepoint(tmp_path / "sp")   # mid-stream, app running
        kafka.produce(inp, ((None, line.encode()) for line in second))
        total = len(first) + len(second)
        expected = dict(model(first + second))
        wait_until(lambda: live_counts(original) == expected, 120, "the original to finish")
        with Savepoint.open(sp_dir) as sp:
            saved = {o.topic: o for o in sp.manifest.offsets}
            assert inp in saved
            in_savepoint = sum(o.offset for o in sp.manifest.offsets if o.topic == inp)
            assert 0 < in_savepoint <= total
            assert sp.manifest.stores[0].name == "word-counts"

        # The fork, while the original runs on.
        fork = wordcount(fork_id, kafka.bootstrap_servers, inp, fork_out, tmp_path / "b")
        restore_savepoint(sp_dir, fork)
        with running_app(fork):
            wait_until(lambda: live_counts(fork) == expected, 120, "the fork to finish")
        assert original.stats["records_in"] >= 0  # still running, unaffected
    assert final_counts(kafka, out) == expected
    assert store_counts(original, tmp_path, "orig-end") == expected
    assert store_counts(fork, tmp_path, "fork-end") == expected
    forked = final_counts(kafka, fork_out)
    assert forked and all(expected[w] == n for w, n in forked.items())
