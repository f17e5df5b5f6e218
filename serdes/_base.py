"""Serde protocol, per-record context and the one error type every serde raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Serde", "SerdeContext", "SerializationError", "serde_error"]


@dataclass(slots=True)
class SerdeContext:
    """Where a record comes from / goes to, so errors can name it.

    The engine reuses ONE mutable instance per task and overwrites the fields before each
    call; serdes must read it during the call and never keep a reference to it.
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    headers: list[tuple[str, bytes]] | None = None
    is_key: bool = False


@runtime_checkable
class Serde(Protocol):
    """Turns values into Kafka record bytes and back. ``None`` maps to ``None`` (tombstones)."""

    def serialize(self, obj: Any, ctx: SerdeContext | None = None) -> bytes | None:
        """`obj` as record bytes (None stays None); raise SerializationError (see
        `serde_error`) rather than return garbage. `ctx` says where the bytes go."""
        ...

    def deserialize(self, data: bytes | None, ctx: SerdeContext | None = None) -> Any:
        """The value `data` encodes (None stays None); SerializationError when it cannot
        be read. `ctx` says where the bytes come from."""
        ...


def _name_of(serde: object) -> str | None:
    if serde is None:
        return None
    if isinstance(serde, str):
        return serde
    cls = serde if isinstance(serde, type) else type(serde)
    return cls.__name__


class SerializationError(Exception):
    """A value could not be (de)serialized; names the record so the error handler can act.

    Carries copies of topic/partition/offset taken at raise time (never the shared context).
    """

    def __init__(
        self,
        message: str,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        serde: object = None,
        cause: BaseException | None = None,
        *,
        is_key: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.serde_name = _name_of(serde)
        self.cause = cause
        self.is_key = is_key
        if cause is not None and self.__cause__ is None:
            self.__cause__ = cause

    def __str__(self) -> str:
        part = "key" if self.is_key else "value" if self.is_key is not None else "record"
        text = (
            f"{self.message} ({part} of topic={self.topic!r}, partition={self.partition}, "
            f"offset={self.offset}, serde={self.serde_name}"
        )
        if self.cause is not None:
            text += f", cause={type(self.cause).__name__}: {self.cause}"
        return text + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the exception picklable (multiprocessing, DLQ workers): ship plain values only.
        return (
            _rebuild_error,
            (
                self.message,
                self.topic,
                self.partition,
                self.offset,
                self.serde_name,
                self.cause,
                self.is_key,
            ),
        )


def _rebuild_error(
    message: str,
    topic: str | None,
    partition: int | None,
    offset: int | None,
    serde: str | None,
    cause: BaseException | None,
    is_key: bool | None,
) -> SerializationError:
    return SerializationError(message, topic, partition, offset, serde, cause, is_key=is_key)


def serde_error(
    serde: object, message: str, ctx: SerdeContext | None, cause: BaseException | None = None
) -> SerializationError:
    """Build a SerializationError from the context as it is *now* (values copied, not ctx)."""
    if ctx is None:
        return SerializationError(message, None, None, None, serde, cause)
    return SerializationError(
        message, ctx.topic, ctx.partition, ctx.offset, serde, cause, is_key=ctx.is_key
    )
