"""Fault injection for crash tests: `KSTREAM_FAULT=<point>:<n>` SIGKILLs the process the n-th
time execution reaches `<point>` with work to commit. Unset (always, in production): no-op."""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("KSTREAM_FAULT", "")
_point, _, _count = _spec.partition(":")
_remaining = int(_count or 1) if _point else 0


def maybe_crash(point: str) -> None:
    global _remaining
    if _remaining and point == _point:
        _remaining -= 1
        if _remaining == 0:
            os.kill(os.getpid(), signal.SIGKILL)
