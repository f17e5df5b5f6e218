"""The `kstream` command: run apps, manage the local broker, run demos."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path

from kstream import broker


def _load_object(spec: str) -> object:
    """Import `package.module:attribute` (attribute defaults to `app`)."""
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, str(Path.cwd()))
    module = importlib.import_module(module_name)
    return getattr(module, attr or "app")


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


if __name__ == "__main__":
    raise SystemExit(main())
