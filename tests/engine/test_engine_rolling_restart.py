"""Static membership on the real broker: a rolling restart (SIGTERM + start, one instance at a
time, under load) causes no rebalance and no restore from scratch, and the output stays exact
under exactly-once; an instance told to leave does so at once; a copied identity is refused."""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from availability_helpers import Load, assignments, rebalance_events, restores, truth
from engine_helpers import AppProcess

from kstream.testing import KafkaCluster, wait_until

PARTITIONS = 6


def stateful_env(kafka: KafkaCluster, app_id: str, inp: str, out: str, state_dir: Path,
                 **extra: str) -> dict[str, str]:
    return {"STATEFUL_APP_BOOTSTRAP": kafka.bootstrap_servers, "STATEFUL_APP_ID": app_id,
            "STATEFUL_APP_INPUT": inp, "STATEFUL_APP_OUTPUT": out,
            "STATEFUL_APP_GUARANTEE": "exactly_once", "STATEFUL_APP_STATE_DIR": str(state_dir),
            "STATEFUL_APP_COMMIT_MS": "200", "KSTREAM_LOG_LEVEL": "INFO", **extra}


def committed(kafka: KafkaCluster, app_id: str, topic: str) -> dict[int, int]:
    return {p: max(o, 0) for p, o in kafka.committed_offsets(app_id, topic).items()}


def updates_by_key(kafka: KafkaCluster, out: str) -> dict[str, list[tuple[int, int]]]:
    got: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in kafka.read_topic(out, timeout=90):
        v = orjson.loads(r.value)  # type: ignore[arg-type]
        got[r.key.decode()].append((v["count"], v["sum"]))  # type: ignore[union-attr]
    return got


def split(procs: list[AppProcess], inp: str, partitions: int = PARTITIONS
          ) -> list[set[int]] | None:
    """The instances' latest assignments when they partition the input between them."""
    sets = [(assignments(p.log_path, inp) or [set()])[-1] for p in procs]
    if all(sets) and sum(map(len, sets)) == partitions == len(set().union(*sets)):
        return sets
    return None


def progressed(kafka: KafkaCluster, app_id: str, inp: str, parts: set[int],
               since: dict[int, int], procs: list[AppProcess]) -> bool:
    for p in procs:
        assert p.alive(), p.log_tail()
    now = committed(kafka, app_id, inp)
    return all(now[p] > since[p] for p in parts)


@pytest.mark.slow
@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_rolling_restart_is_no_rebalance_and_no_restore_from_scratch(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess], static: bool) -> None:
    """Static: no other instance is revoked or assigned anything while one restarts, and the
    restarted one gets its own partitions back and reads no changelog record. Dynamic (the
    contrast, static_membership=False): every restart rebalances the others."""
    inp = topic_factory(partitions=PARTITIONS, prefix="rr-in")
    out = topic_factory(partitions=PARTITIONS, prefix="rr-out")
    app_id = kafka.unique_name("rolling")
    load = Load(kafka, inp, chunk=300, period_s=0.1).start(first=6000)
    # A 20 s session: a restart (process exit, interpreter start, join) must fit in it for
    # static membership to skip the rebalance, and under a loaded full-suite run one took
    # longer than the default 6 s.
    envs = [stateful_env(kafka, app_id, inp, out, tmp_path / f"state{n}",
                         STATEFUL_APP_THROTTLE_US="100", STATEFUL_APP_SESSION_MS="20000",
                         KSTREAM_STATIC_MEMBERSHIP="1" if static else "0") for n in range(3)]
    others_rebalanced = []
    procs = [AppProcess("stateful_app", env, tmp_path / f"i{n}-run0.log").start()
             for n, env in enumerate(envs)]
    app_processes.extend(procs)
    try:
        sets = wait_until(lambda: split(procs, inp), 120, "3 instances to split the input")
        wait_until(lambda: progressed(kafka, app_id, inp, set(range(PARTITIONS)),
                                      dict.fromkeys(range(PARTITIONS), 0), procs),
                   120, "every partition to be processed")
        for n in range(3):
            others = [p for i, p in enumerate(procs) if i != n]
            events_before = [rebalance_events(p.log_path) for p in others]
            assert procs[n].terminate(60) == 0, procs[n].log_tail()
            began = time.monotonic()
            procs[n] = AppProcess("stateful_app", envs[n], tmp_path / f"i{n}-run1.log").start()
            app_processes.append(procs[n])
            back = wait_until(lambda n=n: assignments(procs[n].log_path, inp), 60,
                              f"instance {n} to get partitions again")
            if not static:  # wait for the split again: a restart moves partitions twice
                sets = wait_until(lambda: split(procs, inp), 120, "the split after a restart")
            since = committed(kafka, app_id, inp)
            wait_until(lambda parts=sets[n], since=since: progressed(kafka, app_id, inp, parts,
                                                                     since, procs), 60,
                       f"instance {n}'s partitions to progress after its restart")
            others_rebalanced.append(sum(rebalance_events(p.log_path) for p in others)
                                     - sum(events_before))
            print(f"static={static} instance {n}: back with {sorted(back[-1])} after "
                  f"{time.monotonic() - began:.1f}s; restores {restores(procs[n].log_path)}; "
                  f"assign/revoke events on the others: {others_rebalanced[-1]}")
            if static:
                assert back == [sets[n]], "the restarted instance got other partitions"
                assert others_rebalanced[-1] == 0, \
                    "a rebalance happened: another instance was revoked or assigned"
                assert restores(procs[n].log_path) == [(2, 0, 0)], \
                    "the restarted instance read changelog records or restored from scratch"
        if not static:
            assert all(others_rebalanced), "a dynamic member's restart rebalanced nobody?"
    finally:
        produced = load.stop()
    expected = truth(produced)
    wait_until(lambda: {k: v[-1] for k, v in updates_by_key(kafka, out).items()} == expected
               or not all(p.alive() for p in procs), 240, "final aggregates", interval=1.0)
    for proc in procs:
        assert proc.terminate(60) == 0, proc.log_tail()
    got = updates_by_key(kafka, out)
    for key, (count, total) in expected.items():
        assert [c for c, _ in got[key]] == list(range(1, count + 1)), f"{key}: dup/lost update"
        assert got[key][-1] == (count, total), key
    restored = [r for n in range(3) for r in restores(tmp_path / f"i{n}-run1.log")]
    print(f"{produced} records; restores after restarts (stores, from scratch, records): "
          f"{restored}")


def test_leave_group_on_shutdown_hands_partitions_over_at_once(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess]) -> None:
    """Scale-in: with a 60 s session timeout, the survivor owns everything well before the
    departed instance's session could have expired, because it sent LeaveGroup."""
    inp = topic_factory(partitions=4, prefix="leave-in")
    out = topic_factory(partitions=4, prefix="leave-out")
    app_id = kafka.unique_name("leave")
    Load(kafka, inp, chunk=0, period_s=1).start(first=2000).stop()
    procs = [AppProcess("stateful_app", stateful_env(
        kafka, app_id, inp, out, tmp_path / f"s{n}", STATEFUL_APP_SESSION_MS="60000",
        KSTREAM_LEAVE_GROUP_ON_SHUTDOWN="1" if n == 1 else "0"),
        tmp_path / f"i{n}.log").start() for n in range(2)]
    app_processes.extend(procs)
    wait_until(lambda: split(procs, inp, 4), 120, "2 instances to split the input")
    began = time.monotonic()
    assert procs[1].terminate(60) == 0, procs[1].log_tail()
    assert "event=left_group" in procs[1].log_path.read_text()
    wait_until(lambda: (assignments(procs[0].log_path, inp) or [set()])[-1] == set(range(4)),
               30, "the survivor to own every partition")
    print(f"scale-in: survivor owned all partitions {time.monotonic() - began:.1f}s after "
          "SIGTERM (session timeout 60 s)")
    assert procs[0].terminate(60) == 0


def test_two_processes_with_one_identity_stop_with_a_clear_error(
        kafka: KafkaCluster, topic_factory, tmp_path: Path,  # type: ignore[no-untyped-def]
        app_processes: list[AppProcess]) -> None:
    """A copied state directory: both processes claim one group.instance.id (and one
    transactional.id) and fence each other; a fenced instance rejoins (after a broker restart
    the fencer is its own new member id), but more than FENCINGS_PER_MINUTE fencings stop it
    with an error naming the identity file, so the two never both stay members."""
    inp = topic_factory(partitions=2, prefix="twin-in")
    out = topic_factory(partitions=2, prefix="twin-out")
    app_id = kafka.unique_name("twin")
    first = AppProcess("stateful_app", stateful_env(kafka, app_id, inp, out, tmp_path / "a"),
                       tmp_path / "a.log").start()
    app_processes.append(first)
    ident = tmp_path / "a" / app_id / "kstream.id"
    wait_until(lambda: assignments(first.log_path, inp), 60, "the first instance's assignment")
    (tmp_path / "b" / app_id).mkdir(parents=True)
    shutil.copy(ident, tmp_path / "b" / app_id / "kstream.id")  # a copied state directory
    twin = AppProcess("stateful_app", stateful_env(kafka, app_id, inp, out, tmp_path / "b"),
                      tmp_path / "b.log").start()
    app_processes.append(twin)
    stopped = wait_until(lambda: [p for p in (first, twin) if not p.alive()], 120,
                         "one of the two to stop")
    for proc in stopped:
        assert proc.proc is not None and proc.proc.returncode != 0
        text = proc.log_path.read_text()
        assert "two instances share one state directory's identity" in text, proc.log_tail()
        assert "kstream.id" in text
    print(f"{len(stopped)} of the 2 stopped; fencings logged: "
          f"{sum(p.log_path.read_text().count('event=fenced') for p in (first, twin))}")
