"""The manifest: what a savepoint holds and where it came from (`manifest.json`).

Stores are identified by their explicit names (as their changelogs are), so a restore matches
them by name; kinds and serdes are recorded so a mismatch is found before anything is written,
and so a reader without the application's code knows what the bytes are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kstream._serde_defaults import effective
from kstream.savepoint.format import MANIFEST, SavepointError
from kstream.topology import Topology

FORMAT_VERSION = 2  # 2: store entries carry their changelog record's timestamp
READABLE_VERSIONS = (1, 2)
KINDS = ("kv", "window", "session")


@dataclass
class StoreEntry:
    """One store: its kind, serdes (by name), partition count and per-partition key counts."""

    name: str
    kind: str  # "kv", "window" or "session"
    key_serde: str
    value_serde: str
    partitions: int
    changelog_topic: str
    counts: dict[int, int] = field(default_factory=dict)  # partition -> entries
    changelog_end: dict[int, int] = field(default_factory=dict)  # where the copy stopped
    retention_ms: int | None = None
    segment_ms: int | None = None


@dataclass
class OffsetEntry:
    """A committed input offset of the group, with its metadata (kstream keeps stream time in
    it, which windowed operators need to close windows where they left off)."""

    topic: str
    partition: int
    offset: int
    metadata: str = ""


@dataclass
class PendingEntry:
    """Records of a repartition topic between the group's committed offset and the end: the
    upstream part already consumed their input, the downstream part had not yet read them."""

    suffix: str  # topic name without "<application_id>-"
    partition: int
    records: int
    from_offset: int


@dataclass
class Manifest:
    application_id: str
    kstream_version: str
    created_at: str
    topology_description: str
    topology_fingerprint: str
    processing_guarantee: str
    consistency: str  # how the snapshot was made consistent, in words
    stores: list[StoreEntry]
    offsets: list[OffsetEntry]
    pending: list[PendingEntry] = field(default_factory=list)
    input_partitions: dict[str, int] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def store(self, name: str) -> StoreEntry:
        for entry in self.stores:
            if entry.name == name:
                return entry
        raise SavepointError(f"the savepoint has no store {name!r} (it has "
                             f"{', '.join(s.name for s in self.stores) or 'none'})")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format_version") not in READABLE_VERSIONS:
            raise SavepointError(f"savepoint format {raw.get('format_version')!r} is not one "
                                 f"of {READABLE_VERSIONS}: written by another kstream")
        stores = [StoreEntry(**{**s, "counts": {int(k): v for k, v in s["counts"].items()},
                                "changelog_end": {int(k): v for k, v
                                                  in s["changelog_end"].items()}})
                  for s in raw.pop("stores")]
        offsets = [OffsetEntry(**o) for o in raw.pop("offsets")]
        pending = [PendingEntry(**p) for p in raw.pop("pending")]
        return cls(stores=stores, offsets=offsets, pending=pending, **raw)

    def write(self, root: Path) -> None:
        (root / MANIFEST).write_text(self.to_json())

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = root / MANIFEST
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise SavepointError(f"{root}: no {MANIFEST}: not a savepoint directory") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SavepointError(f"{path}: unreadable manifest ({exc})") from None


def major(version: str) -> str:
    return version.split(".", 1)[0]


def serde_name(serde: Any) -> str:
    """`module.Class`, with the inner serde of wrappers (TimestampedSerde(JsonSerde))."""
    serde = effective(serde)
    cls = type(serde)
    name = f"{cls.__module__}.{cls.__qualname__}"
    inner = getattr(serde, "inner", None)
    return f"{name}({serde_name(inner)})" if inner is not None else name


def store_kind(builder: Any) -> str:
    from kstream.state.builder import KeyValueStoreBuilder
    from kstream.state.session_store import SessionStoreBuilder
    from kstream.state.window_store import WindowStoreBuilder

    if isinstance(builder, SessionStoreBuilder):
        return "session"
    if isinstance(builder, WindowStoreBuilder):
        return "window"
    if isinstance(builder, KeyValueStoreBuilder):
        return "kv"
    return type(builder).__name__


def fingerprint(topology: Topology) -> tuple[str, str]:
    """(description with the application id replaced by `${app}`, its sha256): the same code
    under another application id has the same fingerprint."""
    text = topology.describe()
    app_id = topology.application_id
    if app_id:
        text = text.replace(app_id + "-", "${app}-")
    return text, hashlib.sha256(text.encode()).hexdigest()
