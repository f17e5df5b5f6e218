"""librdkafka's own log lines, through Python logging and rate-limited.

Why: during a broker outage every client thread reports every failed connect, so librdkafka's
default stderr logger prints dozens of lines a second per client. The engine already logs the
outage once per interval (kstream.outage); these lines keep their detail at DEBUG and reach
WARNING at most once per interval for each kind of message.
"""

from __future__ import annotations

import logging
import time

LOG_INTERVAL_S = 10.0


class _OncePerInterval(logging.Filter):
    """Passes a record when its (level, facility) was not seen within the interval."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[tuple[int, str], float] = {}
        self._suppressed: dict[tuple[int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        facility = str(record.args[1]) if isinstance(record.args, tuple) and \
            len(record.args) > 1 else record.getMessage()[:40]
        key = (record.levelno, facility)
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self._interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar lines suppressed)"
        return True


def client_logger() -> logging.Logger:
    """The logger handed to every librdkafka client (`logger` setting)."""
    logger = logging.getLogger("kstream.librdkafka")
    if not any(isinstance(f, _OncePerInterval) for f in logger.filters):
        logger.addFilter(_OncePerInterval(LOG_INTERVAL_S))
    return logger
