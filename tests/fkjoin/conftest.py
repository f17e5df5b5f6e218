"""Fixtures for foreign-key join tests that run apps (tests/fkjoin/apps) as real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kstream.testing import AppProcess


@pytest.fixture
def fk_processes() -> Iterator[list[AppProcess]]:
    procs: list[AppProcess] = []
    yield procs
    for p in procs:
        if p.alive():
            p.kill()
