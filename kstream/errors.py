"""Every error kstream raises, under one root, and the dead-letter headers.

```
KStreamError
├── ConfigError          invalid settings (also a ValueError), raised before connecting
├── TopologyError        a malformed topology (also a ValueError), raised at build/start
│   └── MissingTopicsError   topics missing or not co-partitioned, raised at start
├── RecordError          one record failed (deserialize, timestamp, process, serialize):
│                        the error policy applies (stop, or dead-letter it)
├── PunctuationError     a scheduled callback raised: the app stops
├── InternalError        a kstream invariant broke: never a record's fault, never
│                        dead-lettered; the app stops
├── FatalError           Kafka said no in a way no restart cures (see runtime.kafka_errors)
├── AbortableError / TaskMigratedError / ProducerFencedError   recovered inside the engine
├── StoreNotAvailableError   an interactive query cannot be answered now: retry
│   └── NotOwnedHereError    the key's partition lives on another instance: ask that one
├── UnknownStoreError        an interactive query named a store the topology does not have
└── state errors (kstream.state.errors), StateDirLockedError
```
serdes.SerializationError stays outside (serdes does not depend on kstream); inside a running
topology it reaches the error policy as the cause of a RecordError.
"""

from __future__ import annotations

import traceback

from kstream.record import Headers

STAGE_DESERIALIZE = "deserialize"
STAGE_PROCESS = "process"
STAGE_TIMESTAMP = "timestamp"
STAGE_LATE = "late"


class KStreamError(RuntimeError):
    """Base class of every error kstream raises."""


class ConfigError(KStreamError, ValueError):
    """The configuration is invalid; raised at start-up, before anything touches Kafka."""


class TopologyError(KStreamError, ValueError):
    """The topology is malformed: a duplicate name, a missing parent, an unknown store."""


class InternalError(KStreamError):
    """A kstream invariant broke while processing a record. It names the record but is not
    the record's fault, so it is never dead-lettered: the app stops (exactly-once aborts)."""


class RecordError(KStreamError):
    """A record could not be deserialized or processed. Names exactly which record."""

    batch_index = -1
    """Where the record is in the batch the engine handed a task's run handler (set by the
    handler as the error leaves it; -1 when raised elsewhere)."""

    def __init__(self, stage: str, topic: str, partition: int, offset: int,
                 cause: BaseException) -> None:
        self.stage = stage
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause
        super().__init__(
            f"failed to {stage} record at {topic}[{partition}]@{offset}: "
            f"{type(cause).__name__}: {cause}")


class PunctuationError(KStreamError):
    """A scheduled callback raised; there is no record to dead-letter, so the app stops."""


class MissingTopicsError(TopologyError):
    """Topics the topology reads or writes do not exist."""


class TaskMigratedError(KStreamError):
    """This instance lost its tasks (kicked out of the group); drop uncommitted work, rejoin."""


class ProducerFencedError(TaskMigratedError):
    """A newer producer with our transactional.id exists: our open transaction is void."""


class AbortableError(KStreamError):
    """Kafka refused or lost part of the current commit interval (an outage, a leader move, an
    abortable transaction state). The engine aborts, rewinds to committed state and goes on.

    `producer_unusable`: the producer instance itself cannot go on (librdkafka reported a fatal
    error); recovery replaces it, and its successor's init_transactions aborts on the broker.
    """

    def __init__(self, message: str, producer_unusable: bool = False) -> None:
        super().__init__(message)
        self.producer_unusable = producer_unusable


class StoreNotAvailableError(KStreamError):
    """An interactive query cannot be answered right now: the instance is not running yet,
    is rebalancing, or is restoring the store from its changelog. Retry after a moment; never
    treated as "no value"."""

    def __init__(self, message: str, reason: str = "unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class NotOwnedHereError(StoreNotAvailableError):
    """The key's partition is not owned by this instance: ask its owner
    (`App.metadata_for_key`), or any instance's query server, which forwards."""

    def __init__(self, message: str, store: str, partition: int) -> None:
        super().__init__(message, reason="not_owned_here")
        self.store = store
        self.partition = partition


class UnknownStoreError(KStreamError, LookupError):
    """An interactive query named a store the topology does not have."""


class KafkaUnreachableError(KStreamError):
    """At start-up, no broker of bootstrap_servers answered within startup_timeout_ms. (A
    running instance never raises this: it waits out outages; see runtime.outage.)"""


class FatalError(KStreamError):
    """An error no restart would cure (configuration, authorization, an impossible record):
    the app stops and says what failed."""


def is_fenced(err: object) -> bool:
    """True for a confluent_kafka KafkaError that means this producer was fenced."""
    from kstream.runtime.kafka_errors import FENCED_CODES

    code = getattr(err, "code", None)
    return callable(code) and code() in FENCED_CODES


def kafka_failure(exc: BaseException, what: str) -> KStreamError:
    """Translate a confluent_kafka.KafkaException from any client call into what the engine
    does about it (see kstream.runtime.kafka_errors). librdkafka raises a producer's fatal
    error from whichever call comes next (poll and flush included), so every call goes here."""
    from kstream.runtime.kafka_errors import ErrorClass, classify, kafka_error_of

    err = kafka_error_of(exc)
    if err is None:
        return FatalError(f"{what} failed: {exc!r}")
    kind = classify(err)
    if kind is ErrorClass.FENCED:
        return ProducerFencedError(f"fenced during {what}: {err}")
    if kind is ErrorClass.FATAL:
        return FatalError(f"{what} failed: {err}")
    return AbortableError(f"{what} failed: {err}", producer_unusable=err.fatal())


producer_error = kafka_failure  # the producer's calls are the most common source


class LateRecord(Exception):
    """Why a late record was dead-lettered: no window that accepts it is open any more."""


def dead_letter_headers(error: RecordError, original: Headers | None) -> Headers:
    """The original headers plus where the record came from and why it failed. The one
    builder for every stage (deserialize, timestamp, process, late), engine and driver."""
    tb = "".join(traceback.format_exception_only(type(error.cause), error.cause)).strip()
    return [*(original or []),
            ("kstream.error.stage", error.stage.encode()),
            ("kstream.error.topic", error.topic.encode()),
            ("kstream.error.partition", str(error.partition).encode()),
            ("kstream.error.offset", str(error.offset).encode()),
            ("kstream.error.exception", type(error.cause).__name__.encode()),
            ("kstream.error.message", tb.encode("utf-8", "replace")[:4096])]
