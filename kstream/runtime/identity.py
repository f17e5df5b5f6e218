"""The instance's identity in its state directory: a stable id and an exclusive lock.

Why: under exactly-once the transactional.id must survive restarts of the same instance, so a
restarted instance aborts its own dangling transaction at once instead of waiting for the
transaction timeout. Two live instances must never share it, hence the lock.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from typing import IO

from kstream.errors import KStreamError


class StateDirLockedError(KStreamError):
    """Another live instance of the same application uses this state directory."""


class InstanceIdentity:
    """Holds the lock on `<state_dir>/<application_id>/` for the life of the instance."""

    def __init__(self, state_dir: Path, application_id: str) -> None:
        self.directory = Path(state_dir) / application_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = open(self.directory / ".lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise StateDirLockedError(
                f"state directory {self.directory} is in use by another running instance of "
                f"{application_id!r}; give each instance its own state_dir") from None
        id_file = self.directory / "kstream.id"
        if not id_file.exists():
            tmp = id_file.with_suffix(".tmp")
            tmp.write_text(str(uuid.uuid4()))
            os.replace(tmp, id_file)
        self.instance_id = id_file.read_text().strip()

    def transactional_id(self, application_id: str) -> str:
        return f"{application_id}-{self.instance_id}"

    def group_instance_id(self, application_id: str) -> str:
        """The consumer's `group.instance.id` under static membership: as stable as the
        transactional.id, and as exclusive (the lock), so the coordinator never sees two live
        members claim it unless a state directory was copied (then it fences the older).

        Invariant: equal to `transactional_id`; kstream.runtime.handover names a departed
        member's transactional.id by the group.instance.id the group description shows."""
        return f"{application_id}-{self.instance_id}"

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
