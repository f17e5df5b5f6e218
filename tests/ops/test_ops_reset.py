"""`kstream reset` against a real broker: run, reset, rerun gives the same output; the dry run
changes nothing; a running instance makes it refuse; --to-datetime picks offsets by time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ops_helpers import (
    APPS_DIR,
    OpsProcess,
    http_get,
    lines_for,
    ops_env,
    wait_ready,
)

from kstream.broker import free_port
from kstream.testing import KafkaCluster, wait_until

T0 = 1_700_000_000_000


def _reset(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kstream.cli", "reset", "ops_wordcount:app",
                           *args], cwd=APPS_DIR, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=180)


def _per_key(kafka: KafkaCluster, topic: str, skip: int = 0) -> dict[str, list[int]]:
    """Per word, its counts in output order, from the `skip`-th record of each partition."""
    seen: dict[int, int] = {}
    out: dict[str, list[int]] = {}
    for rec in kafka.read_topic(topic, timeout=60):
        n = seen.get(rec.partition, 0)
        seen[rec.partition] = n + 1
        if n < skip:
            continue
        assert rec.key is not None and rec.value is not None
        out.setdefault(rec.key.decode(), []).append(int.from_bytes(rec.value, "big",
                                                                   signed=True))
    return out


def _records_per_partition(kafka: KafkaCluster, topic: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for rec in kafka.read_topic(topic, timeout=60):
        counts[rec.partition] = counts.get(rec.partition, 0) + 1
    return counts


def _topics(kafka: KafkaCluster) -> set[str]:
    return set(kafka.admin.list_topics(timeout=10).topics)


def _run_until(kafka: KafkaCluster, env: dict[str, str], log: Path, out: str, total: int,
               procs: list[OpsProcess]) -> None:
    """Run one instance until the output holds `total` records, then stop it cleanly."""
    proc = OpsProcess("ops_wordcount", env, log).start()
    procs.append(proc)

    def done() -> bool:
        if not proc.alive():
            raise AssertionError(f"app exited early:\n{proc.log_tail()}")
        return sum(_records_per_partition(kafka, out).values()) >= total

    wait_until(done, 120, f"{total} output records", interval=0.5)
    assert proc.terminate(60) == 0, proc.log_tail()


def test_reset_then_rerun_gives_the_same_output(kafka: KafkaCluster, tmp_path: Path,
                                               ops_processes: list[OpsProcess]) -> None:
    # The input's timestamps are from 2023: without retention.ms=-1 the broker's retention
    # check (every 5 minutes) may delete them mid-test, moving "earliest" past offset 0.
    inp = kafka.create_topic(kafka.unique_name("r-lines"), 3, {"retention.ms": "-1"})
    out = kafka.create_topic(kafka.unique_name("r-counts"), 3)
    app_id = kafka.unique_name("r-wc")
    state = tmp_path / "state"
    port = free_port()
    env = ops_env(kafka, app_id, inp, out, state, port)
    # Stopped for good before each reset: a static member must leave, not wait for a restart.
    env["KSTREAM_LEAVE_GROUP_ON_SHUTDOWN"] = "1"
    lines = lines_for(0, 300)
    # Every partition gets lines (keyless records could all land in one, leaving a partition
    # with no committed offset at all).
    for part in range(3):
        kafka.produce(inp, ((None, line.encode(), T0 + i * 1000)
                            for i, line in enumerate(lines) if i % 3 == part), partition=part)
    words = sum(len(line.split()) for line in lines)

    # Run 1.
    _run_until(kafka, env, tmp_path / "run1.log", out, words, ops_processes)
    first = _per_key(kafka, out)
    assert sum(len(v) for v in first.values()) == words
    internal = {f"{app_id}-word-counts-changelog", f"{app_id}-word-counts-repartition"}
    assert internal <= _topics(kafka)
    offsets_before = kafka.committed_offsets(app_id, inp)
    assert sum(offsets_before.values()) == len(lines)
    assert (state / app_id).is_dir()

    # The dry run says what it would do and changes nothing.
    dry = _reset(env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    for partition, offset in offsets_before.items():
        assert f"{inp}[{partition}]: {offset} -> 0" in dry.stdout, dry.stdout
    for topic in internal:
        assert f"  {topic}\n" in dry.stdout
    assert f"state directory would be deleted: {state / app_id}" in dry.stdout
    assert kafka.committed_offsets(app_id, inp) == offsets_before
    assert internal <= _topics(kafka)
    assert (state / app_id).is_dir()

    # A running instance makes it refuse, and change nothing.
    running = OpsProcess("ops_wordcount", env, tmp_path / "running.log").start()
    ops_processes.append(running)
    wait_ready(port, 90, [running])
    refused = _reset(env)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "refused" in refused.stderr and "live member" in refused.stderr
    assert internal <= _topics(kafka) and (state / app_id).is_dir()
    assert running.terminate(60) == 0, running.log_tail()
    assert kafka.committed_offsets(app_id, inp) == offsets_before

    # The reset itself.
    done = _reset(env, "--to-earliest")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "reset done" in done.stdout
    assert not internal & _topics(kafka)
    assert not (state / app_id).exists()
    assert set(kafka.committed_offsets(app_id, inp).values()) == {0}

    # Run 2 from the start: the same counts, in the same order per word.
    produced_first = _records_per_partition(kafka, out)
    _run_until(kafka, env, tmp_path / "run2.log", out, 2 * words, ops_processes)
    second = _per_key(kafka, out, skip=0)
    rerun = {w: vs[len(first[w]):] for w, vs in second.items()}
    assert rerun == first
    assert sum(_records_per_partition(kafka, out).values()) == 2 * sum(produced_first.values())
    assert http_get(port, "/health")[0] == 0  # the instance is gone

    # --to-datetime: each partition restarts at its first record at or after T.
    cut = T0 + 150 * 1000
    by_time = _reset(env, "--to-datetime", str(cut))
    assert by_time.returncode == 0, (by_time.stdout, by_time.stderr)
    first_at: dict[int, int] = {}
    ends: dict[int, int] = {}
    for rec in kafka.read_topic(inp, timeout=60):
        ends[rec.partition] = rec.offset + 1
        if rec.timestamp >= cut:
            first_at.setdefault(rec.partition, rec.offset)
    want = {p: first_at.get(p, ends[p]) for p in ends}
    assert kafka.committed_offsets(app_id, inp) == want


def test_reset_retries_while_the_group_coordinator_is_loading() -> None:
    """A just-started broker answers group calls with COORDINATOR_LOAD_IN_PROGRESS for a
    while: the reset waits it out (bounded) instead of failing; other errors still raise."""
    from confluent_kafka import KafkaError, KafkaException

    from kstream.reset import _while_coordinator_busy

    answers = [KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.NOT_COORDINATOR, None]

    def call() -> str:
        code = answers.pop(0)
        if code is not None:
            raise KafkaException(KafkaError(code))
        return "done"

    assert _while_coordinator_busy(call, pause_s=0.01) == "done" and not answers

    def refused() -> str:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        _while_coordinator_busy(refused, pause_s=0.01)

    def always_loading() -> str:
        raise KafkaException(KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS))

    with pytest.raises(KafkaException):
        _while_coordinator_busy(always_loading, deadline_s=0.05, pause_s=0.01)
