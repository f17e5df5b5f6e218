"""KeyValueStore over both backends without Kafka: buffer, tombstones, scans, commit, discard.

Logging is off here (nothing to send), so after_commit applies the buffer directly; the
changelog path runs against the real broker in test_state_changelog.py.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kstream._serde_defaults import effective
from kstream.state import KeyValueStore, kv_store
from serdes import JsonSerde, StringSerde, TupleKeySerde

BACKENDS = ["rocksdb", "memory"]


def make(backend: str, root: Path, logging: bool = False, **kw: Any) -> KeyValueStore:
    return kv_store("s", backend=backend, logging=logging, **kw).build(
        root / "0_0", 0, "app-s-changelog")  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[KeyValueStore]:
    s = make(request.param, state_dir)
    yield s
    s.close()


def test_builder_api() -> None:
    b = kv_store("counts", changelog_config={"min.compaction.lag.ms": 100})
    assert b.name == "counts" and b.logging is True
    assert b.changelog_topic("app") == "app-counts-changelog"
    assert b.changelog_topic_config() == {"cleanup.policy": "compact",
                                          "min.compaction.lag.ms": "100"}
    # Not given: the app's defaults, else ordered tuple keys and JSON values.
    assert isinstance(effective(b.key_serde), TupleKeySerde)
    assert isinstance(effective(b.value_serde), JsonSerde)
    assert isinstance(kv_store("x", key_serde="string").key_serde, StringSerde)
    assert kv_store("y", logging=False).logging is False
    for bad in ("", "a/b", "..", "a b"):
        with pytest.raises(ValueError, match="store name"):
            kv_store(bad)
    with pytest.raises(ValueError, match="backend"):
        kv_store("z", backend="lmdb")  # type: ignore[arg-type]


def test_read_your_writes_and_tombstones_hide_backend(store: KeyValueStore) -> None:
    store.put("a", 1)
    store.put("b", {"n": 2})
    store.after_commit()
    assert store.backend.get(b"\x06a\x00\x01") == b"1"  # committed: in the backend
    store.put("a", 10)
    store.delete("b")
    store.put("c", 3)
    assert store.backend.get(b"\x06c\x00\x01") is None  # uncommitted: buffer only
    assert (store.get("a"), store.get("b"), store.get("c")) == (10, None, 3)
    assert list(store.all()) == [("a", 10), ("c", 3)]
    assert store.approximate_count() == 2
    store.discard_uncommitted()
    assert list(store.all()) == [("a", 1), ("b", {"n": 2})]
    store.put("b", None)  # None value deletes
    store.after_commit()
    assert list(store.all()) == [("a", 1)]


def test_scans_in_key_order(store: KeyValueStore) -> None:
    for user in ("bob", "alice", "carol"):
        for day in (3, 1, 2):
            store.put((user, day), f"{user}{day}")
    store.after_commit()
    store.put(("alice", 0), "alice0")
    store.delete(("bob", 2))
    assert [k for k, _ in store.prefix_scan(("alice",))] == [("alice", d) for d in range(4)]
    assert [k for k, _ in store.prefix_scan(("bob",))] == [("bob", 1), ("bob", 3)]
    assert list(store.prefix_scan(("dave",))) == []
    assert [k for k, _ in store.range(("alice", 3), ("bob", 3))] == [
        ("alice", 3), ("bob", 1), ("bob", 3)]
    assert [k for k, _ in store.range(("carol", 2), None)] == [("carol", 2), ("carol", 3)]
    assert [k for k, _ in store.range(None, ("alice", 1))] == [("alice", 0), ("alice", 1)]
    assert list(store.range(("carol", 1), ("alice", 1))) == []  # from > to
    with pytest.raises(TypeError):
        store.prefix_scan("alice")  # type: ignore[arg-type]


def test_byte_prefix_scan_with_other_key_serdes(state_dir: Path) -> None:
    s = make("memory", state_dir, key_serde="string", value_serde="string")
    for k in ("user:1", "user:2", "userx", "admin"):
        s.put(k, k.upper())
    assert list(s.prefix_scan("user:")) == [("user:1", "USER:1"), ("user:2", "USER:2")]


def test_none_keys_rejected(store: KeyValueStore) -> None:
    with pytest.raises(ValueError, match="must not be None"):
        store.put(None, 1)


def test_logged_store_keeps_writes_that_never_reached_the_changelog(state_dir: Path) -> None:
    """after_commit without prepare_commit (no transaction ran): nothing is applied yet."""
    s = make("memory", state_dir, logging=True)
    s.put("k", 1)
    s.after_commit()
    assert s.backend.get(b"\x06k\x00\x01") is None
    assert s.get("k") == 1


# -- a dict model of committed + buffered state --------------------------------------------------
names = st.sampled_from(["a", "b", "c", "d"])
tkeys = st.tuples(names, st.integers(-3, 3))
values = st.none() | st.integers(0, 9)
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), tkeys, values),
    st.tuples(st.just("delete"), tkeys, st.none()),
    st.tuples(st.just("commit"), st.none(), st.none()),
    st.tuples(st.just("discard"), st.none(), st.none()),
    st.tuples(st.just("range"), st.none() | tkeys, st.none() | tkeys),
    st.tuples(st.just("prefix"), names, st.none()),
), max_size=40)


def _check(s: KeyValueStore, view: dict[Any, Any], op: str, a: Any, b: Any) -> None:
    if op == "range":
        want = sorted((k, v) for k, v in view.items()
                      if (a is None or k >= a) and (b is None or k <= b))
        assert list(s.range(a, b)) == want
    elif op == "prefix":
        assert list(s.prefix_scan((a,))) == sorted((k, v) for k, v in view.items()
                                                   if k[0] == a)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=ops)
def test_store_matches_model(backend: str, operations: list[tuple[str, Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = make(backend, Path(tmp))
        committed: dict[Any, Any] = {}
        pending: dict[Any, Any] = {}
        view: dict[Any, Any] = {}
        try:
            for op, a, b in operations:
                if op == "put":
                    s.put(a, b)
                    pending[a] = b
                elif op == "delete":
                    s.delete(a)
                    pending[a] = None
                elif op == "commit":
                    s.after_commit()
                    committed.update(pending)
                    committed = {k: v for k, v in committed.items() if v is not None}
                    pending = {}
                elif op == "discard":
                    s.discard_uncommitted()
                    pending = {}
                view = {**committed, **pending}
                view = {k: v for k, v in view.items() if v is not None}
                _check(s, view, op, a, b)
                if a is not None and op in ("put", "delete"):
                    assert s.get(a) == view.get(a)
            assert list(s.all()) == sorted(view.items())
            assert dict(s.backend.range(None, None)).keys() == {
                s._ser_key(k, None) for k in committed}
            if backend == "memory":
                assert s.approximate_count() == len(view)
        finally:
            s.close()
