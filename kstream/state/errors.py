"""Errors of the state layer; each names the store and says what to do about it."""

from __future__ import annotations

from kstream.errors import KStreamError


class StateCorruptedError(KStreamError):
    """Local state does not fit its changelog (truncated, deleted or recreated under it)."""


class StateRestoreError(KStreamError):
    """Restoring from the changelog failed or did not finish before its deadline."""


class ChangelogWriteError(KStreamError):
    """Kafka rejected changelog records, so the buffered writes must not reach the store."""


class RestoreInterrupted(StateRestoreError):
    """A stop was requested during the restore; progress so far is kept."""
