"""Error types and the bad-record policy (stop, or dead-letter the original bytes)."""

from __future__ import annotations

import traceback

from kstream.record import Headers

STAGE_DESERIALIZE = "deserialize"
STAGE_PROCESS = "process"
STAGE_TIMESTAMP = "timestamp"
STAGE_LATE = "late"


class KStreamError(RuntimeError):
    """Base class of kstream's runtime errors."""


class RecordError(KStreamError):
    """A record could not be deserialized or processed. Names exactly which record."""

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


class MissingTopicsError(KStreamError):
    """Topics the topology reads or writes do not exist."""


class TaskMigratedError(KStreamError):
    """This instance lost its tasks (fenced or kicked out of the group); rejoin, don't write."""


class ProducerFencedError(TaskMigratedError):
    """A newer producer with our transactional.id exists: our open transaction is void."""


FENCED_CODES = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})


def is_fenced(err: object) -> bool:
    """True for a confluent_kafka KafkaError that means this producer was fenced."""
    name = getattr(err, "name", lambda: "")()
    return name in FENCED_CODES


class FatalError(KStreamError):
    """The producer or consumer hit an error it cannot recover from; the app stops."""


def producer_error(exc: Exception, what: str) -> KStreamError:
    """Translate a confluent_kafka.KafkaException from a producer call: fencing (the instance
    rejoins) or anything else (the app stops). librdkafka raises a fatal error from whichever
    call comes next — poll and flush included — so every producer call goes through here."""
    err = exc.args[0] if exc.args else exc
    if is_fenced(err):
        return ProducerFencedError(f"producer fenced during {what}: {err}")
    return FatalError(f"producer failed during {what}: {err}")


def dead_letter_headers(error: RecordError, original: Headers | None) -> Headers:
    """The original headers plus where the record came from and why it failed."""
    tb = "".join(traceback.format_exception_only(type(error.cause), error.cause)).strip()
    return [*(original or []),
            ("kstream.error.stage", error.stage.encode()),
            ("kstream.error.topic", error.topic.encode()),
            ("kstream.error.partition", str(error.partition).encode()),
            ("kstream.error.offset", str(error.offset).encode()),
            ("kstream.error.exception", type(error.cause).__name__.encode()),
            ("kstream.error.message", tb.encode("utf-8", "replace")[:4096])]
