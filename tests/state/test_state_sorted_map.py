"""SortedBytesMap against a dict model: ordered range snapshots after any mix of edits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kstream.state.sorted_map import SortedBytesMap

keys = st.binary(max_size=3)
ops = st.lists(st.one_of(
    st.tuples(st.just("set"), keys, st.integers()),
    st.tuples(st.just("pop"), keys, st.none()),
    st.tuples(st.just("scan"), st.none() | keys, st.none() | keys),
    st.tuples(st.just("bulk"), st.lists(keys, max_size=80), st.none()),
    st.tuples(st.just("clear"), st.none(), st.none()),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_matches_dict_model(operations: list[tuple[str, object, object]]) -> None:
    m: SortedBytesMap[int] = SortedBytesMap()
    model: dict[bytes, int] = {}
    for op, a, b in operations:
        if op == "set":
            m.set(a, b)  # type: ignore[arg-type]
            model[a] = b  # type: ignore[index, assignment]
        elif op == "pop":
            m.pop(a)  # type: ignore[arg-type]
            model.pop(a, None)  # type: ignore[call-overload]
        elif op == "clear":  # edits before the first scan keep no order; after it they do
            m.clear()
            model.clear()
        elif op == "bulk":  # many changes between scans take the re-sort path
            for i, k in enumerate(a):  # type: ignore[arg-type]
                if i % 3:
                    m.set(k, i)
                    model[k] = i
                else:
                    m.pop(k)
                    model.pop(k, None)
        else:
            lo, hi = a, b
            want = sorted(k for k in model
                          if (lo is None or k >= lo) and (hi is None or k < hi))
            assert m.range_keys(lo, hi) == want  # type: ignore[arg-type]
        assert len(m) == len(model)
    assert m.range_keys(None, None) == sorted(model)
    assert all(m.get(k) == v for k, v in model.items())


def test_range_keys_is_a_snapshot() -> None:
    m: SortedBytesMap[int] = SortedBytesMap()
    for k in (b"a", b"b", b"c"):
        m.set(k, 1)
    snapshot = m.range_keys(b"a", None)
    m.pop(b"b")
    m.set(b"d", 1)
    assert snapshot == [b"a", b"b", b"c"]
    assert m.range_keys(None, None) == [b"a", b"c", b"d"]
