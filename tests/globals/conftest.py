"""Fixtures for global-table tests that run apps (tests/globals/apps) as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kstream.testing import AppProcess


@pytest.fixture
def global_processes() -> Iterator[list[AppProcess]]:
    procs: list[AppProcess] = []
    yield procs
    for p in procs:
        if p.alive():
            p.kill()
