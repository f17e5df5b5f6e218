"""Would this value read back the same after a restart?

While an app runs, a store's read cache hands back the very object that was put; after a
restart the value comes from disk through the store's serde (JSON by default: a datetime comes
back a str, a tuple a list). The TopologyTestDriver checks every store write this way
(`check_store_round_trip`, on by default), so a test sees what a restart would do instead of
production finding out on the first record after one.
"""

from __future__ import annotations

from typing import Any

from kstream.errors import KStreamError


class StoreRoundTripError(KStreamError, TypeError):
    """A value put into a store would read back different (type or content) after a restart.
    A programming error, not a bad record: never dead-lettered."""


def first_difference(wrote: Any, read: Any, path: str = "value") -> str | None:
    """Where `read` (the serde's round trip) differs from `wrote`, or None when identical:
    same types all the way down, equal leaves."""
    if type(wrote) is not type(read):
        return (f"{path} is {type(wrote).__name__} ({wrote!r:.60}) but reads back as "
                f"{type(read).__name__} ({read!r:.60})")
    if isinstance(wrote, dict):
        if list(wrote) != list(read):
            return f"{path} has keys {list(wrote)!r:.80} but reads back {list(read)!r:.80}"
        for k in wrote:
            found = first_difference(wrote[k], read[k], f"{path}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(wrote, (list, tuple)):
        if len(wrote) != len(read):
            return f"{path} has {len(wrote)} items but reads back {len(read)}"
        for i, (a, b) in enumerate(zip(wrote, read, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if wrote != read and not (wrote != wrote and read != read):  # NaN equals NaN here
        return f"{path} is {wrote!r:.60} but reads back as {read!r:.60}"
    return None
