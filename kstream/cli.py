"""The `kstream` command: run, describe, reset and savepoint apps, manage the local broker,
run demos."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from kstream import broker
from kstream.errors import (
    ConfigError,
    FatalError,
    KafkaUnreachableError,
    KStreamError,
    RecordError,
    TopologyError,
)
from kstream.runtime.identity import StateDirLockedError


def _load_object(spec: str) -> object:
    """Import `package.module:attribute` (attribute defaults to `app`)."""
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the app module exists but one of its own imports fails: show where
        raise ConfigError(f"cannot import {module_name!r} ({exc}); run from the directory "
                          "that contains it, or check the name (package.module:app)") from None
    try:
        return getattr(module, attr or "app")
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr or 'app'!r}") from None


def _cmd_broker(args: argparse.Namespace) -> int:
    if args.action == "start":
        t0 = time.monotonic()
        started = broker.start_background(port=args.port, data_dir=args.data_dir)
        print(started["bootstrap"])
        print(f"started in {time.monotonic() - t0:.1f}s (pid {started['pid']}, "
              f"log {started['log']})",
              file=sys.stderr)
        return 0
    if args.action == "status":
        info = broker.background_status()
        if not info:
            print("no broker running", file=sys.stderr)
            return 1
        print(info["bootstrap"])
        return 0
    if args.action == "stop":
        stopped = broker.stop_background()
        print("stopped" if stopped else "no broker running", file=sys.stderr)
        return 0
    info = broker.background_status()
    if not info:
        print("no broker running", file=sys.stderr)
        return 1
    print(Path(str(info["log"])).read_text(errors="replace")[-20000:])
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("KSTREAM_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from kstream.app import App

    app = _load_object(args.app)
    if not isinstance(app, App):
        raise SystemExit(f"{args.app} is not a kstream App (got {type(app).__name__})")
    overrides = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if overrides:
        app = app.with_config(**overrides)
    app.run()
    return 0


def _load_app(spec: str, bootstrap_servers: str | None = None) -> Any:
    from kstream.app import App

    app = _load_object(spec)
    if not isinstance(app, App):
        raise SystemExit(f"{spec} is not a kstream App (got {type(app).__name__})")
    if bootstrap_servers:
        app = app.with_config(bootstrap_servers=bootstrap_servers)
    return app


def _cmd_reset(args: argparse.Namespace) -> int:
    from kstream.errors import KStreamError
    from kstream.reset import ResetRefused, run_reset

    app = _load_app(args.app, args.bootstrap_servers)
    config = app.config if args.state_dir is None else app.config.replace(
        state_dir=args.state_dir)
    try:
        run_reset(app.topology, config, to_datetime=args.to_datetime, dry_run=args.dry_run,
                  say=lambda line: print(line, flush=True))
    except ResetRefused as exc:
        print(f"kstream reset: refused: {exc}", file=sys.stderr)
        return 1
    except (KStreamError, ValueError) as exc:
        print(f"kstream reset: failed: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from kstream.describe import describe_mermaid, describe_text

    app = _load_app(args.app)
    cfg = app.config
    if args.mermaid:
        print(describe_mermaid(app.topology, cfg.application_id))
    else:
        print(describe_text(app.topology, cfg.application_id, cfg.dlq_topic))
    return 0


def _cmd_savepoint(args: argparse.Namespace) -> int:
    from kstream.savepoint import Savepoint, SavepointError, create_savepoint, restore_savepoint

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        if args.action == "create":
            app = _load_app(args.app, args.bootstrap_servers)
            path = create_savepoint(app, args.dir, make_archive=args.archive, stop=args.stop,
                                    stop_timeout_s=args.stop_timeout, say=say)
            say(f"savepoint written: {path}")
        elif args.action == "show":
            with Savepoint.open(args.dir) as sp:
                say(_show(sp.manifest))
        else:
            app = _load_app(args.app, args.bootstrap_servers)
            restore_savepoint(args.dir, app, application_id=args.application_id,
                              allow_non_restored_state=args.allow_non_restored_state, say=say)
            say("restore done: start the app (kstream run) and it restores from the changelogs")
    except SavepointError as exc:
        print(f"kstream savepoint {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _show(manifest: Any) -> str:
    m = manifest
    lines = [f"application {m.application_id}, kstream {m.kstream_version}, {m.created_at}",
             f"topology {m.topology_fingerprint[:16]}, {m.processing_guarantee} ({m.consistency})",
             "stores:"]
    for s in m.stores:
        per = ", ".join(f"{p}:{n}" for p, n in sorted(s.counts.items()))
        lines.append(f"  {s.name} ({s.kind}, key {s.key_serde}, value {s.value_serde}): "
                     f"{sum(s.counts.values())} keys in {s.partitions} partitions [{per}]")
    lines.append("offsets:")
    for o in sorted(m.offsets, key=lambda o: (o.topic, o.partition)):
        lines.append(f"  {o.topic}[{o.partition}]: {o.offset if o.offset >= 0 else 'none'}")
    for p in m.pending:
        if p.records:
            lines.append(f"pending: <app>-{p.suffix}[{p.partition}]: {p.records} records")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from kstream._demo import run_demo

    return run_demo(args.name, records=args.records, bootstrap=args.bootstrap_servers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_broker = sub.add_parser(
        "broker", help="manage the local Apache Kafka broker",
        description="Start/stop a local single-node Kafka (KRaft, loopback) in the background. "
                    "Without --data-dir every `start` is a fresh, empty broker; with --data-dir "
                    "DIR, `stop` + `start` keep DIR's topics and data.")
    p_broker.add_argument("action", choices=["start", "stop", "status", "logs"])
    p_broker.add_argument("--port", type=int, default=None,
                          help="client port on 127.0.0.1 (default: the port DIR used last time "
                               "if free, else any free port)")
    p_broker.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                          help="keep the broker's data in DIR and reuse it on later starts: "
                               "topics and committed records survive `stop`/`start` (DIR is "
                               "never wiped). Default: a fresh data dir in ~/.cache/kstream, "
                               "wiped on every start")
    p_broker.set_defaults(func=_cmd_broker)

    p_run = sub.add_parser("run", help="run an app: kstream run package.module:app")
    p_run.add_argument("app")
    p_run.add_argument("--bootstrap-servers", default=None)
    p_run.set_defaults(func=_cmd_run)

    p_reset = sub.add_parser(
        "reset", help="start an app over: reset input offsets, delete internal topics and "
                      "this host's state directory",
        description="Refuses while any instance of the app runs. Deletes the consumer group "
                    "(its committed offsets), commits the new input offsets, deletes the "
                    "changelog and repartition topics (the dead-letter topic is kept) and this "
                    "host's state directory; prints exactly what it does (or, with --dry-run, "
                    "would do).")
    p_reset.add_argument("app", help="package.module:app")
    where = p_reset.add_mutually_exclusive_group()
    where.add_argument("--to-earliest", action="store_true",
                       help="input offsets to the earliest available (the default)")
    where.add_argument("--to-datetime", metavar="T", default=None,
                       help="input offsets to the first record at or after T (ISO 8601, "
                            "UTC unless it names a zone, or epoch milliseconds)")
    p_reset.add_argument("--dry-run", action="store_true",
                         help="print what would be done, change nothing")
    p_reset.add_argument("--bootstrap-servers", default=None)
    p_reset.add_argument("--state-dir", type=Path, default=None,
                         help="the state_dir the app runs with on this host (default: its "
                              "configured one)")
    p_reset.set_defaults(func=_cmd_reset)

    p_describe = sub.add_parser(
        "describe", help="print an app's topology: sub-topologies, topics, stores",
        description="Sub-topologies and their nodes, input and output topics, the internal "
                    "topics kstream creates (with their real names) and the stores.")
    p_describe.add_argument("app", help="package.module:app")
    p_describe.add_argument("--mermaid", action="store_true",
                            help="a mermaid flowchart instead of text")
    p_describe.set_defaults(func=_cmd_describe)

    p_sp = sub.add_parser(
        "savepoint", help="create, show or restore a savepoint (state + input offsets as files)",
        description="create: a consistent copy of a running app's stores and committed offsets "
                    "into a new DIR; show: what DIR holds; restore: write DIR's state and "
                    "offsets for an app whose group has no live members (then kstream run).")
    sp_sub = p_sp.add_subparsers(dest="action", required=True)
    sp_create = sp_sub.add_parser("create", help="kstream savepoint create module:app DIR")
    sp_create.add_argument("app", help="package.module:app")
    sp_create.add_argument("dir", type=Path)
    sp_create.add_argument("--stop", action="store_true",
                           help="savepoint of the stopped app: wait until every instance has "
                                "left the group (stop each one: SIGTERM finishes its batch, "
                                "commits and leaves) and no transaction is open, then read; "
                                "the instances are not stopped by this command")
    sp_create.add_argument("--stop-timeout", type=float, default=300.0, metavar="SECONDS",
                           help="with --stop: how long to wait for the group to empty "
                                "(default 300)")
    sp_create.add_argument("--archive", action="store_true", help="also pack DIR into DIR.tar "
                           "(and remove DIR)")
    sp_create.add_argument("--bootstrap-servers", default=None)
    sp_show = sp_sub.add_parser("show", help="kstream savepoint show DIR")
    sp_show.add_argument("dir", type=Path)
    sp_restore = sp_sub.add_parser("restore", help="kstream savepoint restore DIR module:app")
    sp_restore.add_argument("dir", type=Path)
    sp_restore.add_argument("app", help="package.module:app")
    sp_restore.add_argument("--application-id", default=None,
                            help="restore under this application id (a fork)")
    sp_restore.add_argument("--allow-non-restored-state", action="store_true",
                            help="stores only in the savepoint or only in the topology are "
                                 "left out / start empty instead of failing")
    sp_restore.add_argument("--bootstrap-servers", default=None)
    p_sp.set_defaults(func=_cmd_savepoint)

    p_demo = sub.add_parser("demo", help="run a reference topology end to end on the local broker")
    p_demo.add_argument("name", nargs="?", default="wordcount")
    p_demo.add_argument("--records", type=int, default=None)
    p_demo.add_argument("--bootstrap-servers", default=None)
    p_demo.set_defaults(func=_cmd_demo)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except broker.BrokerError as exc:
        print(f"kstream: {exc}", file=sys.stderr)
        return 2
    except KStreamError as exc:
        # Expected failures: one line (what, where, how to fix) and a code per kind, no
        # traceback. KSTREAM_TRACEBACK=1 shows the traceback too.
        if os.environ.get("KSTREAM_TRACEBACK"):
            raise
        print(f"kstream: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code(exc)


EXIT_CODES: tuple[tuple[type[KStreamError], int], ...] = (
    (ConfigError, 2),
    (KafkaUnreachableError, 4),
    (TopologyError, 5),          # also MissingTopicsError
    (StateDirLockedError, 6),
    (RecordError, 7),            # a bad record under error_policy="fail"
    (FatalError, 8),
)
"""`kstream run` exit codes: 0 stopped cleanly, 1 unexpected error (traceback), 2 bad
configuration or usage, 3 a stop that overran shutdown_timeout_ms, 4 Kafka unreachable at
start, 5 topology or topics wrong, 6 state directory in use, 7 bad record, 8 Kafka refused for
good, 9 any other kstream error."""


def exit_code(exc: KStreamError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 9


if __name__ == "__main__":
    raise SystemExit(main())
