"""What happens to a record that fails: the one decision the engine and the test driver share.

`error_policy="dead_letter"`: the record's original bytes go to `<application_id>-dlq` with
`kstream.errors.dead_letter_headers`, through the same collector (so inside the open
transaction under exactly-once) and processing goes on. Whatever the record produced before it
raised stays: it is part of the same interval as the dead-letter record.

`error_policy="fail"`: the app stops at the record, having committed exactly what came before
it. Under at-least-once and exactly-once the failed record's partial effects share the
uncommitted interval with earlier records (state, and under exactly-once the transaction), so
the caller aborts, replays up to the failed record, commits and stops (REPLAY_THEN_STOP).
Under at-most-once nothing can be taken back: the caller commits the offsets up to the failed
record and stops (STOP).
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Protocol

from kstream.config import AT_MOST_ONCE, ERROR_DEAD_LETTER
from kstream.errors import RecordError, dead_letter_headers
from kstream.runtime.stats import EngineStats
from kstream.runtime.task import RecordCollector


class BadRecordAction(enum.Enum):
    """What the caller must do next; the policy itself has already logged and counted."""

    DEAD_LETTERED = "dead_lettered"        # sent to the DLQ: continue with the next record
    REPLAY_THEN_STOP = "replay_then_stop"  # abort, replay up to the record, commit, stop
    STOP = "stop"                          # commit offsets up to the record, stop


class FailedMessage(Protocol):
    """What the policy reads of the failed record: a confluent_kafka.Message, or the test
    driver's in-memory one."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    # confluent-kafka types it loosely; consumed records carry a list of (str, bytes) or None.
    def headers(self) -> Any: ...


def handle_bad_record(err: RecordError, msg: FailedMessage, *, error_policy: str, guarantee: str,
                      dlq_topic: str, collector: RecordCollector, stats: EngineStats,
                      log: logging.Logger) -> BadRecordAction:
    """Apply the error policy to `msg`, which raised `err`. `log` is the caller's logger, so
    the engine's log lines keep their logger name."""
    stats.errors += 1
    if error_policy == ERROR_DEAD_LETTER:
        log.warning("event=dead_letter topic=%s partition=%s offset=%s stage=%s error=%r",
                    err.topic, err.partition, err.offset, err.stage, str(err.cause))
        collector.send(dlq_topic, msg.key(), msg.value(), msg.timestamp()[1],
                       dead_letter_headers(err, msg.headers()))
        stats.dead_lettered += 1
        return BadRecordAction.DEAD_LETTERED
    log.error("event=record_error policy=fail topic=%s partition=%s offset=%s stage=%s "
              "error=%r", err.topic, err.partition, err.offset, err.stage, str(err.cause))
    if guarantee != AT_MOST_ONCE:
        return BadRecordAction.REPLAY_THEN_STOP
    return BadRecordAction.STOP
