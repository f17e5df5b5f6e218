"""The broker goes away and comes back while 3 instances of a stateful app (a repartition hop,
6 partitions) process records: no instance exits, the output stays exact, every partition
processes again soon after the broker's return, and SIGTERM still stops each instance.

Each test runs its own broker (the session broker is shared and must never be killed).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from engine_helpers import AppProcess

from kstream.broker import LocalBroker, free_port
from kstream.testing import KafkaCluster, wait_until

# Timing-sensitive (each runs its own broker and measures how fast instances resume or stop):
# one xdist worker runs them one after another, never two at once.
pytestmark = pytest.mark.xdist_group("own-broker")

ACCOUNTS = 300
INSTANCES = 3
PARTITIONS = 6
SESSION_TIMEOUT_S = 6.0  # stateful_app.py


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    broker = LocalBroker(data_dir=tmp_path / "broker", port=free_port()).start()
    yield broker
    broker.stop()


def produce(kafka: KafkaCluster, topic: str, start: int, count: int) -> None:
    kafka.produce(topic, ((str(i).encode(), orjson.dumps(
        {"id": i, "account": f"a{i % ACCOUNTS}", "amount": i % 97}))
        for i in range(start, start + count)))


def committed(kafka: KafkaCluster, group: str, topic: str) -> dict[int, int]:
    try:
        return kafka.committed_offsets(group, topic)
    except Exception:  # the broker may be away or loading: no progress to report
        return {}


def check_output(kafka: KafkaCluster, topic: str, total: int, exact: bool) -> None:
    """Per account the running counts: exactly 1..n (no loss, no duplicate), or under
    at-least-once every count 1..n present (nothing lost). At-least-once may also count a
    record twice (its effect reached the changelog, its offset was not committed, so it is
    processed again), as in Kafka Streams: counts above n are allowed there."""
    updates: dict[str, list[int]] = defaultdict(list)
    for r in kafka.read_topic(topic, timeout=120):
        updates[r.key.decode()].append(orjson.loads(r.value)["count"])  # type: ignore[union-attr,arg-type]
    expected = {f"a{k}": len(range(k, total, ACCOUNTS)) for k in range(ACCOUNTS)}
    for account, n in expected.items():
        got = updates[account]
        if exact:
            assert got == list(range(1, n + 1)), f"{account}: {got[:10]}… ({len(got)} updates)"
        else:
            assert set(range(1, n + 1)) <= set(got), f"{account}: lost updates"


def outage(broker: LocalBroker, seconds: float, procs: list[AppProcess], graceful: bool) -> None:
    """Take the broker away for `seconds` (SIGKILL, or SIGTERM for a rolling restart), checking
    all along that no instance exits, then start it again on the same data dir and port."""
    if graceful:
        broker.stop(keep_data=True)
    else:
        broker.kill()
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:  # bounded: the outage's length
        for p in procs:
            assert p.alive(), f"an instance exited during the outage:\n{p.log_tail()}"
        time.sleep(0.5)
    broker.start()


@pytest.mark.slow
@pytest.mark.parametrize(("guarantee", "outage_s", "graceful"), [
    ("exactly_once", 20, False),
    ("exactly_once", 90, False),
    ("at_least_once", 20, False),
    ("exactly_once", 5, True),
], ids=["eos-kill-20s", "eos-kill-90s", "alos-kill-20s", "eos-rolling-restart"])
def test_instances_outlive_a_broker_restart(
        own_broker: LocalBroker, tmp_path: Path, app_processes: list[AppProcess],
        guarantee: str, outage_s: float, graceful: bool) -> None:
    kafka = KafkaCluster(own_broker.bootstrap_servers)
    inp = kafka.create_topic(kafka.unique_name("in"), PARTITIONS)
    out = kafka.create_topic(kafka.unique_name("out"), PARTITIONS)
    app_id = kafka.unique_name(f"restart-{guarantee}")
    first, second = 12_000, 6_000
    produce(kafka, inp, 0, first)
    for n in range(INSTANCES):
        env = {"STATEFUL_APP_BOOTSTRAP": kafka.bootstrap_servers, "STATEFUL_APP_ID": app_id,
               "STATEFUL_APP_INPUT": inp, "STATEFUL_APP_OUTPUT": out,
               "STATEFUL_APP_GUARANTEE": guarantee,
               "STATEFUL_APP_STATE_DIR": str(tmp_path / f"state{n}"),
               "STATEFUL_APP_THROTTLE_US": "400", "STATEFUL_APP_COMMIT_MS": "200",
               "STATEFUL_APP_BATCH": "100", "KSTREAM_LOG_LEVEL": "INFO",
               "KSTREAM_WATCHDOG_TIMEOUT_MS": "15000"}
        app_processes.append(AppProcess("stateful_app", env, tmp_path / f"app{n}.log").start())

    # Mid-stream: some input committed, plenty left.
    wait_until(lambda: sum(committed(kafka, app_id, inp).values()) >= first // 4, 120,
               "a quarter of the input committed")
    before = committed(kafka, app_id, inp)
    outage(own_broker, outage_s, app_processes, graceful)
    back = time.monotonic()
    kafka.close()  # its admin client was connected to the dead incarnation
    produce(kafka, inp, first, second)

    def every_partition_moved() -> bool:
        now = committed(kafka, app_id, inp)
        return all(now.get(p, -1) > max(before.get(p, 0), 0) for p in range(PARTITIONS))

    try:
        wait_until(every_partition_moved, SESSION_TIMEOUT_S + 30,
                   "every input partition to commit again after the broker's return")
    except TimeoutError as exc:
        tails = "\n".join(f"--- instance {n}:\n{p.log_tail(60)}"
                          for n, p in enumerate(app_processes))
        raise AssertionError(f"{exc}; before {before}, now "
                             f"{committed(kafka, app_id, inp)}\n{tails}") from None
    resumed_s = time.monotonic() - back
    total = first + second
    wait_until(lambda: sum(committed(kafka, app_id, inp).values()) >= total
               or not all(p.alive() for p in app_processes), 300, "all input committed")
    for p in app_processes:
        assert p.alive(), f"an instance exited:\n{p.log_tail()}"
    expected = _expected_final(total)

    def all_counted() -> bool:
        final = _final_counts(kafka, out)
        if guarantee == "exactly_once":
            return final == expected
        return all(final.get(k, 0) >= n for k, n in expected.items())

    wait_until(all_counted, 120, "final counts for every account")
    check_output(kafka, out, total, exact=guarantee == "exactly_once")
    print(f"{guarantee}: outage {outage_s}s, every partition committing again "
          f"{resumed_s:.1f}s after the broker's return")
    assert resumed_s <= SESSION_TIMEOUT_S + 30
    for p in app_processes:
        began = time.monotonic()
        assert p.terminate(timeout=60) == 0, p.log_tail()
        assert time.monotonic() - began < 35  # shutdown_timeout_ms (30 s) plus process exit


def _final_counts(kafka: KafkaCluster, topic: str) -> dict[str, int]:
    last: dict[str, int] = {}
    for r in kafka.read_topic(topic, timeout=120):
        last[r.key.decode()] = orjson.loads(r.value)["count"]  # type: ignore[union-attr,arg-type]
    return last


def _expected_final(total: int) -> dict[str, int]:
    return {f"a{k}": len(range(k, total, ACCOUNTS)) for k in range(ACCOUNTS)}
