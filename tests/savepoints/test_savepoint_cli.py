"""`kstream savepoint` on the command line against apps run by `kstream run`: `create --stop`
of an instance killed with SIGKILL mid-transaction (waits for the group to empty and the open
transaction to be aborted; the snapshot equals the committed offsets exactly), `--archive`,
`show`, `restore --application-id` of the archive and the fork run to the end, and refusals
(`--stop` while an instance runs, unmatched stores with and without
`--allow-non-restored-state`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sp_apps import wordcount
from test_savepoint_fork import lines, model, saved_counts

from kstream.savepoint import Savepoint, create_savepoint
from kstream.savepoint.create import CONSISTENCY_STOPPED
from kstream.testing import AppProcess, KafkaCluster, wait_until

APPS = Path(__file__).parent / "apps"


def env_for(kafka: KafkaCluster, app_id: str, inp: str, out: str, state: Path) -> dict[str, str]:
    return {"SP_APP_ID": app_id, "SP_BOOTSTRAP": kafka.bootstrap_servers, "SP_INPUT": inp,
            "SP_OUTPUT": out, "SP_STATE_DIR": str(state)}


def savepoint_cli(env: dict[str, str], *args: str, timeout: float = 120
                  ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kstream.cli", "savepoint", *args], cwd=APPS,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def consumed(kafka: KafkaCluster, group: str, topic: str) -> int:
    return sum(max(0, o) for o in kafka.committed_offsets(group, topic).values())


def test_cli_stop_savepoint_of_killed_instance_archive_show_restore(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path) -> None:
    inp, out, fork_out = topic_factory(3), topic_factory(3), topic_factory(3)
    app_id, fork_id = kafka.unique_name("sp-cli"), kafka.unique_name("sp-clif")
    env = env_for(kafka, app_id, inp, out, tmp_path / "state-a")
    first, second = lines(6000, 11), lines(30000, 12)
    app = AppProcess("sp_cli_app", env, tmp_path / "app.log", cwd=APPS).start()
    try:
        kafka.produce(inp, ((None, line.encode()) for line in first))
        wait_until(lambda: consumed(kafka, app_id, inp) >= 1500, 120, "the app to start work")

        # --stop never stops an instance itself: while one runs it waits, then gives up.
        refused = savepoint_cli(env, "create", "sp_cli_app:app", str(tmp_path / "early"),
                                "--stop", "--stop-timeout", "2")
        assert refused.returncode == 1, refused
        assert "still has live members" in refused.stderr and "Nothing was written" \
            in refused.stderr
        assert not (tmp_path / "early").exists()

        log = tmp_path / "create.log"
        with open(log, "w") as handle:
            create = subprocess.Popen(
                [sys.executable, "-m", "kstream.cli", "savepoint", "create", "sp_cli_app:app",
                 str(tmp_path / "sp"), "--stop", "--archive"], cwd=APPS,
                env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: "waiting for 1 live instance" in log.read_text(), 60,
                       "savepoint create --stop to wait for the running instance")
            kafka.produce(inp, ((None, line.encode()) for line in second))
            busy_from = consumed(kafka, app_id, inp)
            wait_until(lambda: consumed(kafka, app_id, inp) > busy_from + 2000, 120,
                       "the app to be busy with the second part")
            app.kill()   # SIGKILL mid-stream: its open transaction is left to the broker
            assert create.wait(180) == 0, log.read_text()
        finally:
            if create.poll() is None:
                create.kill()
    finally:
        if app.alive():
            app.kill()
    output = log.read_text()
    archive = tmp_path / "sp.tar"
    assert archive.is_file() and not (tmp_path / "sp").exists(), output

    # Exact: the snapshot holds what the committed offsets say was consumed, no more, no less
    # (the killed instance's uncommitted work was aborted, not read).
    topology = wordcount(app_id, kafka.bootstrap_servers, inp, out, tmp_path / "x").topology
    committed_now = kafka.committed_offsets(app_id, inp)
    with Savepoint.open(archive) as sp:
        assert sp.manifest.consistency == CONSISTENCY_STOPPED
        offsets = {o.partition: o.offset for o in sp.manifest.offsets if o.topic == inp}
    assert offsets == committed_now
    assert 1500 <= sum(offsets.values()) < len(first) + len(second)
    records = kafka.read_topic(inp)
    consumed_lines = [r.value.decode() for r in records if r.value is not None
                      and r.offset < offsets[r.partition]]
    assert saved_counts(archive, topology) == model(consumed_lines)

    shown = savepoint_cli({}, "show", str(archive))
    assert shown.returncode == 0, shown
    assert f"application {app_id}" in shown.stdout and "word-counts (kv" in shown.stdout
    assert f"{inp}[0]: {offsets[0]}" in shown.stdout

    # Restore the archive as a fork with the CLI and run it to the end of the input.
    fork_env = env_for(kafka, fork_id, inp, fork_out, tmp_path / "state-b")
    restored = savepoint_cli(fork_env, "restore", str(archive), "sp_cli_app:app",
                             "--application-id", fork_id)
    assert restored.returncode == 0, restored
    fork = AppProcess("sp_cli_app", fork_env, tmp_path / "fork.log", cwd=APPS).start()
    try:
        wait_until(lambda: consumed(kafka, fork_id, inp) == len(first) + len(second), 180,
                   "the fork to consume all input")
        assert fork.terminate(60) == 0, fork.log_tail()
    finally:
        if fork.alive():
            fork.kill()
    fork_app = wordcount(fork_id, kafka.bootstrap_servers, inp, fork_out, tmp_path / "y")
    final = create_savepoint(fork_app, tmp_path / "fork-end", stop=True, stop_timeout_s=60)
    assert saved_counts(final, fork_app.topology) == model(first + second)

    # Unmatched stores: refused with nothing written, then allowed.
    renamed = tmp_path / "renamed"
    with Savepoint.open(archive) as sp:
        sp.writer().rename_store("word-counts", "counts-v0").write(renamed)
    other_id = kafka.unique_name("sp-clio")
    other_env = env_for(kafka, other_id, inp, out, tmp_path / "state-c")
    refused = savepoint_cli(other_env, "restore", str(renamed), "sp_cli_app:app")
    assert refused.returncode == 1 and "does not match" in refused.stderr, refused
    assert all(o < 0 for o in kafka.committed_offsets(other_id, inp).values())
    assert not [t for t in kafka.admin.list_topics(timeout=10).topics if t.startswith(other_id)]
    allowed = savepoint_cli(other_env, "restore", str(renamed), "sp_cli_app:app",
                            "--allow-non-restored-state")
    assert allowed.returncode == 0, allowed
    assert kafka.committed_offsets(other_id, inp) == committed_now

