"""Global tables on the real broker, with apps as OS processes (tests/globals/apps/global_app.py).

* Two instances hold identical global tables, equal to the topic's latest values, after their
  bootstrap and again after live updates (each instance reports a digest of its whole store
  through a Processor API probe while running).
* An instance started after 200k catalogue records processes nothing before its bootstrap is
  done: orders waiting in their topic all join with the final catalogue values, and its log
  shows the bootstrap finished before it joined the group.
* After SIGKILL, a restart reads only the tail: its bootstrap reads exactly the records
  produced while it was down.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from kstream.testing import AppProcess, KafkaCluster, wait_until

APPS = Path(__file__).parent / "apps"
sys.path.insert(0, str(APPS))
from probe_digest import digest  # noqa: E402

BOOTSTRAP_DONE = re.compile(r"event=global_bootstrap_done store=catalogue records=(\d+)")


def start(kafka: KafkaCluster, topics: dict[str, str], app_id: str, instance: str,
          state_dir: Path, log: Path, procs: list[AppProcess]) -> AppProcess:
    env = {"GLOBAL_APP_ID": app_id, "GLOBAL_APP_BOOTSTRAP": kafka.bootstrap_servers,
           "GLOBAL_APP_STATE_DIR": str(state_dir), "GLOBAL_APP_INSTANCE": instance,
           "GLOBAL_APP_CATALOGUE": topics["catalogue"], "GLOBAL_APP_ORDERS": topics["orders"],
           "GLOBAL_APP_OUT": topics["out"], "GLOBAL_APP_PROBES": topics["probes"],
           "GLOBAL_APP_PROBE_OUT": topics["probe_out"]}
    proc = AppProcess("global_app", env, log, cwd=APPS).start()
    procs.append(proc)
    return proc


def bootstraps(log: Path) -> list[int]:
    """Records read by each bootstrap the log shows, in order."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [int(n) for n in BOOTSTRAP_DONE.findall(text)]


def make_topics(kafka: KafkaCluster, catalogue_partitions: int = 3) -> dict[str, str]:
    return {"catalogue": kafka.create_topic(partitions=catalogue_partitions),
            "orders": kafka.create_topic(partitions=4), "out": kafka.create_topic(partitions=4),
            "probes": kafka.create_topic(partitions=4),
            "probe_out": kafka.create_topic(partitions=1)}


def produce_catalogue(kafka: KafkaCluster, topic: str, model: dict[str, Any],
                      records: list[tuple[str, Any]]) -> None:
    kafka.produce(topic, [(k, None if v is None else orjson.dumps(v)) for k, v in records])
    for key, value in records:
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value


def wait_for_digests(kafka: KafkaCluster, topics: dict[str, str], model: dict[str, Any],
                     instances: set[str], timeout: float) -> dict[str, tuple[int, str]]:
    """Probe every partition until every instance reported the model's count and digest."""
    want = (len(model), digest(list(model.items())))
    latest: dict[str, tuple[int, str]] = {}
    round_ = [0]

    def all_match() -> bool:
        round_[0] += 1
        for partition in range(4):  # every probe partition: every instance owns one
            kafka.produce(topics["probes"], [(f"probe-{round_[0]}", b"{}")], partition=partition)
        for rec in kafka.read_topic(topics["probe_out"], timeout=30):
            report = orjson.loads(rec.value or b"{}")
            latest[report["instance"]] = (report["count"], report["digest"])
        return all(latest.get(i) == want for i in instances)

    wait_until(all_match, timeout, f"instances {sorted(instances)} to report {want}",
               interval=2.0)  # each probe reads the whole store: keep them few
    return latest


def test_two_instances_hold_identical_global_tables(kafka: KafkaCluster, tmp_path: Path,
                                                    global_processes: list[AppProcess]) -> None:
    topics = make_topics(kafka)
    model: dict[str, Any] = {}
    initial = [(f"sku{i % 7000}", {"title": f"t{i}", "v": i}) for i in range(10_000)]
    initial += [(f"sku{i}", None) for i in range(0, 7000, 13)]  # deletes
    produce_catalogue(kafka, topics["catalogue"], model, initial)
    app_id = kafka.unique_name("global-two")
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for name, log in zip("ab", logs, strict=True):
        start(kafka, topics, app_id, name, tmp_path / f"state-{name}", log, global_processes)
    wait_until(lambda: all(bootstraps(log) for log in logs), 90, "both bootstraps")
    assert [bootstraps(log) for log in logs] == [[len(initial)], [len(initial)]]
    reports = wait_for_digests(kafka, topics, model, {"a", "b"}, 90)
    assert reports["a"] == reports["b"]

    live = [(f"sku{i % 9000}", {"title": f"live{i}", "v": -i}) for i in range(3_000)]
    live += [(f"sku{i}", None) for i in range(5, 9000, 17)]
    produce_catalogue(kafka, topics["catalogue"], model, live)
    reports = wait_for_digests(kafka, topics, model, {"a", "b"}, 90)
    assert reports["a"] == reports["b"] == (len(model), digest(list(model.items())))
    for proc in global_processes:
        assert proc.terminate(60) == 0, proc.log_tail()


@pytest.mark.slow
def test_late_instance_bootstraps_first_and_restart_reads_only_the_tail(
        kafka: KafkaCluster, tmp_path: Path, global_processes: list[AppProcess]) -> None:
    topics = make_topics(kafka)
    model: dict[str, Any] = {}
    # 200k records: every sku twice, the second version final.
    catalogue = [(f"sku{i % 100_000}", {"title": f"t{i}", "version": i // 100_000})
                 for i in range(200_000)]
    produce_catalogue(kafka, topics["catalogue"], model, catalogue)
    orders = [(f"o{i}", {"id": i, "sku": f"sku{(i * 7919) % 100_000}"}) for i in range(3_000)]
    kafka.produce(topics["orders"], [(k, orjson.dumps(v)) for k, v in orders])

    app_id = kafka.unique_name("global-late")
    log = tmp_path / "late.log"
    proc = start(kafka, topics, app_id, "late", tmp_path / "state", log, global_processes)
    out = kafka.read_topic(topics["out"], timeout=120, min_count=len(orders))
    results = {rec.key.decode(): orjson.loads(rec.value or b"null") for rec in out
               if rec.key is not None}
    # Every waiting order joined, each with the final version: none was processed against
    # a table still bootstrapping (an inner join would have dropped it or seen version 0).
    assert len(out) == len(orders)
    assert results == {k: {**v, "product": model[v["sku"]], "instance": "late"}
                       for k, v in orders}
    text = log.read_text(errors="replace")
    assert bootstraps(log) == [200_000]
    assert text.index("event=global_bootstrap_done") < text.index("event=assign")

    wait_for_digests(kafka, topics, model, {"late"}, 120)
    proc.kill()  # SIGKILL: the checkpoint is whatever the last applied batch wrote
    tail = [(f"sku{i}", {"title": f"tail{i}", "version": 2}) for i in range(0, 3_000, 2)]
    tail += [(f"sku{i}", None) for i in range(1, 500, 2)]
    produce_catalogue(kafka, topics["catalogue"], model, tail)
    start(kafka, topics, app_id, "late", tmp_path / "state", log, global_processes)
    wait_until(lambda: len(bootstraps(log)) == 2, 90, "the second bootstrap")
    assert bootstraps(log) == [200_000, len(tail)]
    wait_for_digests(kafka, topics, model, {"late"}, 120)


def test_a_stop_during_bootstrap_is_clean_and_keeps_progress(kafka: KafkaCluster,
                                                             tmp_path: Path) -> None:
    """SIGTERM/stop() while the global store bootstraps: run() returns without an error, and
    the next start reads only what the first did not (each applied batch is checkpointed)."""
    from kstream import App, StreamBuilder
    from kstream.testing import running_app

    catalogue = kafka.create_topic(partitions=2)
    orders, out = kafka.create_topic(partitions=1), kafka.create_topic(partitions=1)
    total = kafka.produce(catalogue, ((f"k{i}".encode(), b"v") for i in range(600_000)))

    def make_app() -> App:
        b = StreamBuilder()
        table = b.global_table(catalogue, "string", "string", name="catalogue")
        (b.stream(orders, "string", "string")
         .join(table, lambda _k, v: v, lambda v, t: t).to(out, "string", "string"))
        return App(b, application_id=app_id, bootstrap_servers=kafka.bootstrap_servers,
                   state_dir=str(tmp_path))

    def bootstrapping(app: App) -> bool:
        engine = app._engine
        return engine is not None and any(
            r.records > 0 and r.position < r.end for r in engine.meters.restores.values())

    app_id = kafka.unique_name("global-stop")
    first = make_app()
    with running_app(first, join_timeout=60):  # re-raises whatever run() raised
        wait_until(lambda: bootstrapping(first), 60, "the bootstrap to be under way",
                   interval=0.01)
    assert first.stats["global_restored"] == 0  # it never finished
    second = make_app()
    with running_app(second, join_timeout=60):
        wait_until(lambda: second.stats.get("global_restored", 0) > 0, 120,
                   "the second bootstrap")
    assert 0 < second.stats["global_restored"] < total
