"""The operator interface the runtime fuses against: `Fusable`, `Emitter`, `FuseResult`.

Why: an operator's record-at-a-time `process()` and its generated (fused) form must do the
same thing, so both live in the operator's own class, side by side. The runtime walks the
graph and asks each processor for its fused lines through this interface; it never looks at
DSL classes or their fields (the runtime never imports the DSL).

The generated function keeps the current record in these locals, which `fuse` reads and
rebinds: `key`, `value`, `ts` (timestamp), `headers` (the record's list or None), `TOPIC`,
`PARTITION`; the record's offset is the expression `Emitter.offset` (a source handler reads it
from the message only where a line needs it, mostly on error paths); `Record` is in
scope for handing a record to a non-fused processor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol


class Emitter(Protocol):
    """The function being generated; `kstream.runtime.fusion` implements it."""

    offset: str
    """The current record's offset as an expression (not a local: most records never need it)."""

    def bind(self, value: Any, prefix: str) -> str:
        """A fresh global name of the generated code that refers to `value`."""
        ...

    def local(self, prefix: str) -> str:
        """A fresh local variable name (for values an operator must keep across a loop)."""
        ...

    def line(self, depth: int, text: str) -> None:
        """Append one line of code, indented `depth` levels."""
        ...

    def output_counter(self, owner: object,
                       flush: Callable[[int, int | None], None]) -> tuple[str, str] | None:
        """Locals (count, last timestamp) for `owner`'s outputs in a run handler: the code
        adds 1 to count and sets the timestamp per output, and `flush(count, last_ts)` runs
        once when the run ends, however it ends. None in a per-record function: count there."""
        ...

    def note_source_key(self, fast: Any, raw: str, decoded: str) -> None:
        """Local `decoded` holds `fast(raw)` for the source record's key bytes `raw` (both
        None for a null key or a key decoded another way); valid in the whole function."""
        ...

    def source_key_bytes(self, fast: Any) -> tuple[str, str] | None:
        """(decoded, raw) when `fast` (a serdes._fast serializer) gives back exactly the bytes
        the source's key decoder read, else None. Generated code must check that the key it
        encodes `is` decoded (str is immutable: the same object has the same bytes)."""
        ...

    def assign_change(self, depth: int, change: str, old: str, new: str) -> None:
        """`value = change(old, new)` (`change`: the bound name of the DSL's Change class), as
        a line `unwrap_change` can still take back."""
        ...

    def unwrap_change(self, depth: int) -> None:
        """`value = value.new`; right after `assign_change` that becomes `value = new`, so no
        Change is built (table.to_stream() after an aggregation)."""
        ...

    def note_encoding(self, fast: Any, obj: str, data: str) -> None:
        """Local `data` holds `fast(obj)` (a serdes._fast serializer's bytes), valid until the
        next line is emitted (`unwrap_change` keeps it)."""
        ...

    def known_encoding(self, fast: Any) -> tuple[str, str] | None:
        """(obj, data) of the last `note_encoding` with this `fast` if it still holds, else
        None. Generated code must still check that the value it encodes `is` obj."""
        ...

    def note_key_bytes(self, fast: Any, data: str) -> None:
        """Local `data` holds `fast(key)` of the current `key`, or None where the code that
        set it did not encode; valid as long as a `note_encoding` would be."""
        ...

    def known_key_bytes(self, fast: Any) -> str | None:
        """The `data` of the last `note_key_bytes` with this `fast` if it still holds, else
        None. Generated code must still check that it is not None."""
        ...


class FuseResult(NamedTuple):
    """Where the code of an operator's children goes after its own lines."""

    depth: int
    """Indentation of the children's lines (one more than given when the operator loops)."""
    skip: str
    """The statement that drops the current record there: "return" or, in a loop, "continue"."""
    children_elsewhere: bool = False
    """The operator hands its records to its children later, not inline (an aggregation that
    emits on commit): no children's lines follow its own, which end the record's path."""


class Fusable(ABC):
    """A processor that can also write itself into a fused chain.

    Invariant (each implementation keeps it next to its `process`): running the lines `fuse`
    emits, followed by the children's code, has the same effect as `process` calling its
    downstream with the resulting record: same user-function calls in the same order, same
    key, value, timestamp and headers reaching every child, serde and collector.
    """

    def can_fuse(self) -> bool:
        """False when this instance must run as a processor (e.g. a sink with a partitioner)."""
        return True

    @abstractmethod
    def fuse(self, em: Emitter, depth: int, skip: str) -> FuseResult:
        """Emit this operator's lines at `depth`; `skip` drops the current record."""
