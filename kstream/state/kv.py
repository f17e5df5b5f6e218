"""KeyValueStore: what processors get from `context.get_store(name)`.

The outermost layer: it turns keys and values into bytes and back, and hands the commit hooks
to the layers below (write buffer -> change-logging -> backend).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kstream._serde_defaults import effective
from kstream.state.backend import NO_TIMESTAMP, TIMESTAMP_PREFIX, Backend
from kstream.state.buffer import WriteBuffer
from kstream.state.changelog import ChangelogCollector
from kstream.state.round_trip import StoreRoundTripError, first_difference
from kstream.state.scans import OrderedScans
from serdes import Serde, SerdeContext, TupleKeySerde
from serdes._fast import fast_serializer

if TYPE_CHECKING:
    from kstream.runtime.operator import Emitter

CACHE_ENTRIES = 10_000
_MISSING = object()


class KeyValueStore(OrderedScans):
    """A task's key-value store: buffered writes, ordered scans, changelog on commit.

    Point reads go through a bounded cache of decoded values (hot keys skip the backend read
    and the decode). Invariant: the cache always equals what `get` would decode from the buffer
    and backend; it is cleared whenever uncommitted writes are dropped. Values returned by
    `get` are shared with the cache: put a changed value back rather than mutating it alone.
    """

    _VALUE_AT = 0  # where an entry's value bytes start (after a timestamp: 8)

    def __init__(self, name: str, buffer: WriteBuffer, backend: Backend, key_serde: Serde,
                 value_serde: Serde, *, changelog_topic: str, partition: int,
                 logging: bool, task_dir: Path) -> None:
        self.name = name
        self.changelog_topic = changelog_topic
        self.partition = partition
        self.logging = logging
        self.task_dir = task_dir
        self.backend = backend
        self._buffer = buffer
        self._buffer_put = buffer.put
        self._ordered_keys = isinstance(effective(key_serde), TupleKeySerde)
        # Contexts name the changelog in serde errors; bound methods save a lookup per call.
        self._key_ctx = SerdeContext(topic=changelog_topic, partition=partition, is_key=True)
        self._value_ctx = SerdeContext(topic=changelog_topic, partition=partition)
        self._ser_key, self._de_key = key_serde.serialize, key_serde.deserialize
        self._ser_value, self._de_value = value_serde.serialize, value_serde.deserialize
        # None: no shortcut, call the serde (a default serde: its target's shortcut).
        self._fast_key = fast_serializer(effective(key_serde))
        self._fast_value = fast_serializer(effective(value_serde))
        self._cache: dict[Any, Any] = {}
        # The TopologyTestDriver turns this on: every put is decoded again and compared (see
        # kstream.state.round_trip), so tests see what a restart would read back.
        self.check_round_trip = False

    def __repr__(self) -> str:
        return f"KeyValueStore({self.name!r}, partition={self.partition})"

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: Any) -> Any:
        return self._read(key, self._decode)

    def _decode(self, data: bytes) -> Any:
        return self._de_value(data, self._value_ctx)

    def _read(self, key: Any, decode: Callable[[bytes], Any]) -> Any:
        """The cached entry of `key`, else `decode(stored bytes)` (None if absent), cached."""
        # Cache key: keys equal in Python but encoded differently (1, 1.0, True) must not
        # share an entry, so non-str keys carry their type.
        ck: Any = key if type(key) is str else (type(key), key)
        try:
            value = self._cache.get(ck, _MISSING)
        except TypeError:  # unhashable key: no caching
            ck, value = _MISSING, _MISSING
        if value is not _MISSING:
            return value
        data = self._buffer.get(self._key_bytes(key))
        value = None if data is None else decode(data)
        if ck is not _MISSING:
            self._remember(ck, value)
        return value

    def _remember(self, ck: Any, value: Any) -> None:
        cache = self._cache
        if len(cache) >= CACHE_ENTRIES and ck not in cache:
            del cache[next(iter(cache))]  # oldest insertion first
        cache[ck] = value

    def approximate_count(self) -> int:
        return self._buffer.approximate_count()

    def range_bytes(self, lo: bytes, hi: bytes) -> list[tuple[bytes, Any]]:
        """(key bytes, value) with lo <= key bytes < hi, as a list: a short scan by encoded key
        (window and session stores build their keys as bytes), without decoding keys."""
        de_value, value_ctx, at = self._de_value, self._value_ctx, self._VALUE_AT
        return [(key, de_value(value[at:], value_ctx))
                for key, value in self._buffer.range(lo, hi)]

    def _decoded(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[Any, Any]]:
        de_key, de_value = self._de_key, self._de_value
        key_ctx, value_ctx, at = self._key_ctx, self._value_ctx, self._VALUE_AT
        for key, value in self._buffer.range(lo, hi):
            yield de_key(key, key_ctx), de_value(value[at:], value_ctx)

    # -- writes --------------------------------------------------------------------------------
    def put(self, key: Any, value: Any) -> bytes | None:
        """Buffer a write; value None deletes. Visible to this task's reads at once.

        Returns the value's bytes as stored (None for a delete): a fused aggregation hands
        them to a sink whose serde has the same C codec (`fast_value_serializer`)."""
        key_bytes, data = self._encode(key, value)
        self._buffer_put(key_bytes, data)
        self._cached_write(key, value)
        return data

    @property
    def str_key_cache(self) -> dict[Any, Any]:
        """The read cache, for generated code: a str key in it maps to exactly what the
        store's read returns for it (the invariant above): `get`, or `get_with_timestamp` in a
        TimestampedKeyValueStore; a key not in it: call that read."""
        return self._cache

    @property
    def fast_value_serializer(self) -> Callable[[Any], bytes] | None:
        """The C codec `put` encodes values with when it can (serdes._fast), else None."""
        return self._fast_value

    @property
    def fast_key_serializer(self) -> Callable[[Any], bytes] | None:
        """The C codec `put` encodes keys with when it can (serdes._fast), else None."""
        return self._fast_key

    def _encode(self, key: Any, value: Any) -> tuple[bytes, bytes | None]:
        """(key bytes, value bytes or None for a delete) as `put` stores them: built-in serdes
        through their C codec, the serde itself when that raises."""
        if value is None:
            data = None
        elif self._fast_value is None:
            data = self._ser_value(value, self._value_ctx)
        else:
            try:
                data = self._fast_value(value)
            except Exception:
                data = self._ser_value(value, self._value_ctx)
        if self.check_round_trip and data is not None:
            self._check_round_trip(key, value, data)
        if key is None:
            raise ValueError(f"store {self.name!r}: keys must not be None")
        if self._fast_key is None:
            key_bytes = self._ser_key(key, self._key_ctx)
        else:
            try:
                key_bytes = self._fast_key(key)
            except Exception:
                key_bytes = self._ser_key(key, self._key_ctx)
        if key_bytes is None:
            raise ValueError(f"store {self.name!r}: key serde returned None for {key!r}")
        return key_bytes, data

    def _entry(self, data: bytes | None, timestamp: int) -> bytes | None:
        """What the buffer stores for value bytes `data`: the bytes themselves (a timestamped
        store prefixes them)."""
        return data

    def put_uncached(self, key: Any, value: Any) -> None:
        """put() for entries written once and not read back by key (join buffers): the read
        cache drops the key instead of taking the value, so such writes never churn it."""
        key_bytes, data = self._encode(key, value)
        self._buffer_put(key_bytes, self._entry(data, NO_TIMESTAMP))
        if self._cache:
            with contextlib.suppress(TypeError):  # unhashable key: never cached
                self._cache.pop(key if type(key) is str else (type(key), key), None)

    def delete(self, key: Any) -> None:
        self._buffer.put(self._key_bytes(key), None)
        self._cached_write(key, None)

    def _cached_write(self, key: Any, value: Any) -> None:
        cache = self._cache
        if type(key) is str:  # the common case first: no type-tagged key, no try
            if key in cache or len(cache) < CACHE_ENTRIES:
                cache[key] = value
                return
            ck: Any = key
        else:
            ck = (type(key), key)
        try:
            if len(cache) >= CACHE_ENTRIES and ck not in cache:
                del cache[next(iter(cache))]  # oldest insertion first
            cache[ck] = value
        except TypeError:  # unhashable key: no caching
            pass

    def _check_round_trip(self, key: Any, value: Any, data: bytes) -> None:
        read = self._de_value(data, self._value_ctx)
        problem = first_difference(value, read)
        if problem is not None:
            serde = type(getattr(self._ser_value, "__self__", None)).__name__
            raise StoreRoundTripError(
                f"store {self.name!r}, key {key!r:.60}: {problem} after a restart (the store "
                f"reads values back through {serde}). Store a type the serde keeps, or give "
                f"the store a serde for this type (value_serde=...).")

    def _key_bytes(self, key: Any) -> bytes:
        if key is None:
            raise ValueError(f"store {self.name!r}: keys must not be None")
        data = self._ser_key(key, self._key_ctx)
        if data is None:
            raise ValueError(f"store {self.name!r}: key serde returned None for {key!r}")
        return data

    # -- commit hooks (called by the Task; see kstream.runtime.commit) -------------------------
    def prepare_commit(self, collector: ChangelogCollector) -> None:
        self._buffer.prepare_commit(collector)

    def after_commit(self) -> None:
        try:
            self._buffer.after_commit()
        except BaseException:
            self._cache.clear()  # the buffered writes were dropped: so are their cached values
            raise

    def discard_uncommitted(self) -> None:
        self._buffer.discard()
        self._cache.clear()

    def close(self) -> None:
        """Close the backend; writes not yet committed are dropped (they are not durable)."""
        self._buffer.discard()
        self._cache.clear()
        self.backend.close()


class TimestampedKeyValueStore(KeyValueStore):
    """A store whose entries carry a timestamp: the aggregations' stores (KIP-258).

    Why: an aggregate's output is stamped with the largest timestamp that contributed to it, so
    an update caused by an older record does not go back in time; that timestamp must survive
    a restart, so it lives with the value.

    Layout, as Kafka Streams': locally `timestamp (8 bytes, signed big-endian) | value bytes`;
    in the changelog the plain value bytes, stamped with that timestamp (so a changelog reads
    the same as a plain store's, and `restore_stores` rebuilds the prefix from the record
    timestamp). `get` and scans return plain values; the cache holds (value, timestamp).
    """

    timestamped = True
    _VALUE_AT = TIMESTAMP_PREFIX.size

    def get(self, key: Any) -> Any:
        entry = self.get_with_timestamp(key)
        return None if entry is None else entry[0]

    def get_with_timestamp(self, key: Any) -> tuple[Any, int] | None:
        """(value, timestamp) of `key`, or None."""
        entry: tuple[Any, int] | None = self._read(key, self._decode_entry)
        return entry

    def _decode_entry(self, data: bytes) -> tuple[Any, int]:
        return (self._de_value(data[self._VALUE_AT:], self._value_ctx),
                TIMESTAMP_PREFIX.unpack_from(data)[0])

    def put(self, key: Any, value: Any) -> None:
        """A write with no timestamp (NO_TIMESTAMP): the DSL's aggregations use
        `put_with_timestamp`; this is for processors that share the store."""
        self.put_with_timestamp(key, value, NO_TIMESTAMP)

    def put_with_timestamp(self, key: Any, value: Any, timestamp: int) -> bytes | None:
        """Buffer a write of `value` stamped `timestamp`; value None deletes. Returns the
        value's serialized bytes without the timestamp (None for a delete)."""
        key_bytes, raw = self._encode(key, value)
        self._buffer_put(key_bytes, self._entry(raw, timestamp))
        self._cached_write(key, None if value is None else (value, timestamp))
        return raw

    def _entry(self, data: bytes | None, timestamp: int) -> bytes | None:
        return None if data is None else TIMESTAMP_PREFIX.pack(timestamp) + data

    def fuse_put_with_timestamp(self, em: Emitter, depth: int, value: str) -> tuple[str, str]:
        """Emit `stored = put_with_timestamp(key, value, ts)` (locals `key`, `ts`) for a fused
        aggregation; returns the locals (stored, key bytes): the value's bytes as `put`
        returns them, and the key's bytes as stored, or None where the call ran.

        Why: the call crosses five Python functions per record (put, _encode, _entry, the
        buffer's set, _cached_write), about half an aggregation's handler. For a str key and
        a value both with C codecs, the same steps run inline: encode value then key (the
        input's own bytes while the key is the source's decoded object), buffer the entry,
        update the read cache exactly as `_cached_write` would (eviction: the call).
        Anything else (a codec refusing, a None value, the round-trip check on) takes the
        call, so results and errors stay the method's. A subclass may override the method:
        then always the call."""
        put = em.bind(self.put_with_timestamp, "aput")
        stored, key_bytes = em.local("stored"), em.local("kbytes")
        if (type(self) is not TimestampedKeyValueStore or self._fast_value is None
                or self._fast_key is None):
            em.line(depth, f"{key_bytes} = None")
            em.line(depth, f"{stored} = {put}(key, {value}, ts)")
            return stored, key_bytes
        store, cache = em.bind(self, "store"), em.bind(self._cache, "cache")
        em.line(depth, f"{key_bytes} = None")
        em.line(depth, f"if type(key) is str and {value} is not None "
                       f"and not {store}.check_round_trip:")
        em.line(depth + 1, "try:")
        em.line(depth + 2, f"{stored} = {em.bind(self._fast_value, 'vfast')}({value})")
        encode_key = f"{em.bind(self._fast_key, 'kfast')}(key)"
        source_key = em.source_key_bytes(self._fast_key)  # (decoded, raw) of the input's key
        if source_key is not None:
            encode_key = f"{source_key[1]} if key is {source_key[0]} else {encode_key}"
        em.line(depth + 2, f"{key_bytes} = {encode_key}")
        em.line(depth + 1, "except Exception:")
        em.line(depth + 2, f"{key_bytes} = None")
        em.line(depth, f"if {key_bytes} is None:")
        em.line(depth + 1, f"{stored} = {put}(key, {value}, ts)")
        em.line(depth, "else:")
        em.line(depth + 1, f"{em.bind(self._buffer_put, 'bput')}({key_bytes}, "
                           f"{em.bind(TIMESTAMP_PREFIX.pack, 'pack')}(ts) + {stored})")
        em.line(depth + 1, f"if key in {cache} or len({cache}) < {CACHE_ENTRIES}: "
                           f"{cache}[key] = ({value}, ts)")
        em.line(depth + 1, f"else: {em.bind(self._cached_write, 'cwrite')}(key, ({value}, ts))")
        return stored, key_bytes
