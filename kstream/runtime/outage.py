"""Waiting out a broker outage: retry with backoff, log once per interval, honour stop.

Why one helper: every place that must outlast an outage (recovery, restore metadata, the
first init_transactions) needs the same three things, and a copy that forgets one of them is
how an instance ends up flooding logs, exiting, or ignoring SIGTERM while Kafka is away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

from kstream.errors import AbortableError, FatalError, KStreamError, kafka_failure

log = logging.getLogger("kstream.outage")

T = TypeVar("T")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
LOG_INTERVAL_S = 10.0


class StopRequested(KStreamError):
    """A stop was requested while waiting for Kafka; the caller stops without committing."""


class OutageWaiter:
    """Runs an operation until it succeeds, Kafka says it never will, or a stop is requested.

    `should_stop()` is checked before each attempt, so a SIGTERM during an outage stops the
    instance within one attempt's own timeout. `on_waiting(True/False)` reports readiness.
    """

    def __init__(self, should_stop: Callable[[], bool],
                 on_waiting: Callable[[bool], None] | None = None) -> None:
        self._should_stop = should_stop
        self._on_waiting = on_waiting or (lambda _waiting: None)

    def run(self, op: Callable[[], T], what: str, deadline_s: float | None = None,
            retry_on: tuple[type[BaseException], ...] = (AbortableError,)) -> T:
        """`op()` again after each retriable failure (a KafkaException that is not fenced or
        fatal, or one of `retry_on`). Raises StopRequested on stop, the last error after
        `deadline_s` (None: no deadline, for waiting out an outage of any length)."""
        began = time.monotonic()
        backoff = BACKOFF_FIRST_S
        last_log = 0.0
        attempts = 0
        while True:
            if self._should_stop():
                raise StopRequested(f"stop requested while waiting for Kafka ({what})")
            attempts += 1
            try:
                result = op()
            except KafkaException as exc:
                failure = kafka_failure(exc, what)
                if not isinstance(failure, retry_on):
                    raise failure from exc
                error: BaseException = failure
            except retry_on as exc:
                error = exc
            else:
                if attempts > 1:
                    self._on_waiting(False)
                    log.info("event=kafka_back what=%s after_s=%.1f attempts=%d",
                             what, time.monotonic() - began, attempts)
                return result
            now = time.monotonic()
            if deadline_s is not None and now - began >= deadline_s:
                raise error
            if attempts == 1:
                self._on_waiting(True)
            if now - last_log >= LOG_INTERVAL_S:
                last_log = now
                log.warning("event=waiting_for_kafka what=%s waited_s=%.0f error=%s",
                            what, now - began, error)
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)


def fatal_unless_retriable(exc: KafkaException, what: str) -> FatalError | None:
    """The FatalError to raise for `exc`, or None when waiting may cure it."""
    failure = kafka_failure(exc, what)
    return failure if isinstance(failure, FatalError) else None
