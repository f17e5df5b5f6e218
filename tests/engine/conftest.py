"""Fixtures for engine tests that run apps as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import AppProcess


@pytest.fixture
def app_processes(tmp_path: Path) -> Iterator[list[AppProcess]]:
    procs: list[AppProcess] = []
    yield procs
    for p in procs:
        if p.alive():
            p.kill()
