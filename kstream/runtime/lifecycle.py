"""The engine's failure and replay state: one object, explicit states, checked transitions.

```
            ┌──────────── recovered ────────────┐
            ▼                                   │
 CREATED ─► RUNNING ──abortable/fenced error──► RECOVERING
            │   ▲                               │   ▲
  bad record│   │ replay reached the record     │   │ broker error while replaying
  (fail)    ▼   │ (commit, then STOPPING)       ▼   │
            REPLAYING ──────────────────────────┘   │
 any state ──► STOPPING ──► STOPPED                 │
 any state ──► FAILED (a FatalError)  ◄─────────────┘
```

REPLAYING exists for `error_policy="fail"`: the failed record's earlier effects share the open
transaction, so the engine aborts, replays up to the failed record, commits exactly what came
before it and stops. Recovery from a broker error during the replay returns to REPLAYING.
"""

from __future__ import annotations

import enum
import time

from kstream.errors import KStreamError, RecordError

REPLAY_DEADLINE_S = 120.0


class EngineState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    REPLAYING = "replaying"
    RECOVERING = "recovering"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


_ALLOWED: dict[EngineState, frozenset[EngineState]] = {
    EngineState.CREATED: frozenset({EngineState.RUNNING, EngineState.RECOVERING,
                                    EngineState.STOPPING, EngineState.FAILED}),
    EngineState.RUNNING: frozenset({EngineState.REPLAYING, EngineState.RECOVERING,
                                    EngineState.STOPPING, EngineState.FAILED}),
    EngineState.REPLAYING: frozenset({EngineState.RECOVERING, EngineState.STOPPING,
                                      EngineState.FAILED}),
    EngineState.RECOVERING: frozenset({EngineState.RUNNING, EngineState.REPLAYING,
                                       EngineState.STOPPING, EngineState.FAILED}),
    EngineState.STOPPING: frozenset({EngineState.STOPPED, EngineState.FAILED}),
    EngineState.STOPPED: frozenset(),
    EngineState.FAILED: frozenset({EngineState.STOPPED}),
}


class IllegalTransition(KStreamError):
    """An internal invariant broke: the engine tried a transition its diagram forbids."""


class EngineLifecycle:
    """Where the engine is, and for REPLAYING which record it must stop at."""

    def __init__(self) -> None:
        self.state = EngineState.CREATED
        self.failure: RecordError | None = None   # the bad record that stops the app
        # Bad records met, per partition: the replay stops at the first offset of each.
        self._failed: dict[tuple[str, int], RecordError] = {}
        self.replay_deadline = 0.0

    def to(self, new: EngineState) -> None:
        if new is self.state:
            return
        if new not in _ALLOWED[self.state]:
            raise IllegalTransition(f"engine state {self.state.value} -> {new.value}")
        self.state = new

    # -- queries the hot path asks ---------------------------------------------------------
    @property
    def replaying(self) -> bool:
        return bool(self._failed)

    @property
    def may_commit(self) -> bool:
        """Revocation and shutdown commit only a consistent interval: never while a failed
        record's effects may be in it (REPLAYING before the stop point) or after an error."""
        return self.state in (EngineState.RUNNING, EngineState.STOPPING) and self.failure is None

    # -- record failures (error_policy="fail") ---------------------------------------------
    def record_failed(self, err: RecordError) -> None:
        """Remember the bad record; the engine aborts and replays up to it."""
        if self.failure is None:
            self.failure = err
            self.replay_deadline = time.monotonic() + REPLAY_DEADLINE_S
        self._failed[(err.topic, err.partition)] = err
        self.to(EngineState.REPLAYING)

    def stop_offset(self, topic: str, partition: int) -> int | None:
        err = self._failed.get((topic, partition))
        return None if err is None else err.offset

    def failure_at(self, topic: str, partition: int) -> RecordError:
        """The error of the bad record the replay stopped at. With bad records in several
        partitions the replay stops at whichever it reaches first, and the commit covers
        exactly the records before that one: the app reports that record (the others'
        partitions may not have been replayed up to theirs, so their records are redone)."""
        return self._failed[(topic, partition)]

    def replay_overdue(self) -> bool:
        """The failed record's partition was revoked before the replay reached it: stop."""
        return self.failure is not None and time.monotonic() > self.replay_deadline

    def after_recovery(self) -> None:
        self.to(EngineState.REPLAYING if self.failure is not None else EngineState.RUNNING)
