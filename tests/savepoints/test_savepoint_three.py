"""Savepoints of a running 3-instance exactly-once word count (its repartition topic is written
by all three instances, so their transactions interleave on it).

* Input arriving in bursts: the running savepoint finds an exact cut without pausing anyone;
  the fork and the original both end with the model's counts.
* Input arriving faster than the instances keep up: there may be no moment at which the
  records in flight can be split exactly. The running savepoint then either is exact or
  refuses with a clear error, never loses or doubles a count (without the check of the
  repartition topic's transaction markers about one such savepoint in four lost counts);
  the stop savepoint is exact.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sp_apps import wordcount
from test_savepoint_fork import lines, model, saved_counts

from kstream.app import App
from kstream.savepoint import Savepoint, SavepointError, create_savepoint, restore_savepoint
from kstream.testing import KafkaCluster, running_app, wait_until


def consumed(kafka: KafkaCluster, group: str, topic: str) -> int:
    return sum(max(0, o) for o in kafka.committed_offsets(group, topic).values())


def every_partition_committed(kafka: KafkaCluster, group: str, topic: str, n: int) -> bool:
    return min(kafka.committed_offsets(group, topic).values()) >= n


def run_fork(kafka: KafkaCluster, sp: Path, fork: App, inp: str, total: int, tmp: Path,
             name: str) -> Any:
    """Restore `sp` into `fork`, run it over the whole input, stop; its counts."""
    restore_savepoint(sp, fork)
    with running_app(fork):
        wait_until(lambda: consumed(kafka, fork.config.application_id, inp) == total, 180,
                   "the fork to consume all input")
    end = create_savepoint(fork, tmp / name, stop=True, stop_timeout_s=60)
    return saved_counts(end, fork.topology)


def test_running_savepoint_of_three_instances_between_bursts(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out, fork_out = topic_factory(3), topic_factory(3), topic_factory(3)
    app_id, fork_id = kafka.unique_name("sp-3b"), kafka.unique_name("sp-3bf")
    bursts = [lines(800, 100 + i) for i in range(14)]
    everything = [line for burst in bursts for line in burst]
    instances = [wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / f"i{i}")
                 for i in range(3)]
    feeding_error: list[BaseException] = []

    def feed() -> None:
        try:
            sent = 0
            for burst in bursts:
                sent += kafka.produce(inp, ((None, line.encode()) for line in burst))
                wait_until(lambda s=sent: consumed(kafka, app_id, inp) >= s, 120,
                           "the instances to consume the burst")
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            feeding_error.append(exc)

    with ExitStack() as stack:
        for app in instances:
            stack.enter_context(running_app(app))
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: every_partition_committed(kafka, app_id, inp, 300), 120,
                   "all three instances to be at work")
        sp = create_savepoint(instances[0], tmp_path / "sp", consistent_timeout_s=60)
        in_savepoint = consumed(kafka, app_id, inp)
        feeder.join(300)
        assert not feeder.is_alive() and not feeding_error, feeding_error
        assert consumed(kafka, app_id, inp) == len(everything)
    assert in_savepoint < len(everything)  # the instances went on after the savepoint

    original = create_savepoint(instances[0], tmp_path / "orig-end", stop=True,
                                stop_timeout_s=60)
    assert saved_counts(original, instances[0].topology) == model(everything)
    fork = wordcount(fork_id, kafka.bootstrap_servers, inp, fork_out, tmp_path / "f")
    assert run_fork(kafka, sp, fork, inp, len(everything), tmp_path, "fork-end") \
        == model(everything)


def consumed_lines(kafka: KafkaCluster, topic: str, sp: Path) -> list[str]:
    """The input lines before the savepoint's offsets."""
    with Savepoint.open(sp) as opened:
        offsets = {o.partition: o.offset for o in opened.manifest.offsets if o.topic == topic}
    return [r.value.decode() for r in kafka.read_topic(topic)
            if r.value is not None and r.offset < offsets[r.partition]]


def test_busy_three_instances_running_savepoint_exact_or_refused_stop_savepoint_exact(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out = topic_factory(3), topic_factory(3)
    app_id = kafka.unique_name("sp-3h")
    instances = [wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / f"i{i}")
                 for i in range(3)]
    everything = lines(100_000, 300)
    with ExitStack() as stack:
        for app in instances:
            stack.enter_context(running_app(app))
        kafka.produce(inp, ((None, line.encode()) for line in everything))
        wait_until(lambda: every_partition_committed(kafka, app_id, inp, 3000), 120,
                   "all three instances to be busy")
        running: Path | None = None
        try:
            running = create_savepoint(instances[0], tmp_path / "running",
                                       consistent_timeout_s=10)
        except SavepointError as exc:
            assert "several instances" in str(exc) and "--stop" in str(exc)
            assert not (tmp_path / "running").exists()
        for app in instances[1:]:
            app.stop()
        stopped = instances[0].savepoint(tmp_path / "stopped", stop=True, stop_timeout_s=120)
    topology = instances[0].topology
    # Each savepoint holds exactly what its offsets say was consumed: store + words in flight.
    for sp in (stopped, running):
        if sp is not None:
            assert saved_counts(sp, topology) == model(consumed_lines(kafka, inp, sp)), sp
