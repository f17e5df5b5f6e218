"""Fixtures for the operations tests: apps under tests/ops/apps run as OS processes (so a test
can SIGKILL them) or in-process; the apps directory is importable from the tests too."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

APPS_DIR = Path(__file__).parent / "apps"
if str(APPS_DIR) not in sys.path:
    sys.path.insert(0, str(APPS_DIR))

from ops_helpers import OpsProcess  # noqa: E402 - after the path is set


@pytest.fixture
def ops_processes() -> Iterator[list[OpsProcess]]:
    """Processes a test starts; any still alive at the end are SIGKILLed."""
    procs: list[OpsProcess] = []
    yield procs
    for p in procs:
        if p.alive():
            p.kill()
