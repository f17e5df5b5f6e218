"""Apps as real OS processes, so tests can SIGKILL them mid-stream (crash, failover, restart
tests). `kstream run module:app` in a given directory, output appended to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class AppProcess:
    """One instance of `module:app`, started with `kstream run` from `cwd`.

    >>> proc = AppProcess("my_app", {"MY_APP_INPUT": "in"}, Path("app.log"), cwd=apps_dir)
    >>> proc.start(); ...; proc.kill()          # SIGKILL: no shutdown code runs
    >>> proc.terminate(timeout=60)              # SIGTERM, returns the exit code
    """

    def __init__(self, module: str, env: dict[str, str], log_path: Path, cwd: Path) -> None:
        self.module = module
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AppProcess:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kstream.cli", "run", f"{self.module}:app"],
                cwd=self.cwd, env={**os.environ, **self.env}, stdout=log,
                stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (a clean stop) and its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
