"""A fused aggregation writes its store inline (TimestampedKeyValueStore.fuse_put_with_timestamp)
and its sink reuses the key and value bytes, or (emit_on_commit) keeps the update for the
commit; the result must be exactly what the method calls of the unfused aggregation produce:
outputs, buffered entries, read cache, local store after the commit, and the same error for a
value the codec refuses.

The driver checks every store write's round trip by default, which takes the method call; the
inline path runs with that check off, as in the engine.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kstream import StreamBuilder
from kstream.dsl._stateful import AggregateOp
from kstream.errors import RecordError
from kstream.state.kv import CACHE_ENTRIES
from kstream.testing import TopologyTestDriver
from serdes import JsonSerde, StringSerde

DELETE = 13  # an amount whose update deletes the aggregate (the adder returns None)
HUGE = 7  # an amount whose aggregate holds an int beyond JSON's C codec (and the serde's)


def _add(_key: Any, value: int, agg: dict[str, int] | None) -> dict[str, Any] | None:
    if value == DELETE:
        return None
    agg = agg or {"n": 0, "sum": 0}
    return {"n": agg["n"] + 1, "sum": agg["sum"] + (2**70 if value == HUGE else value)}


def _topology(key_serde: Any, emit_on_commit: bool) -> StreamBuilder:
    b = StreamBuilder()
    (b.stream("in", key_serde, JsonSerde()).group_by_key()
     .aggregate(lambda: {"n": 0, "sum": 0}, _add, "totals", emit_on_commit=emit_on_commit)
     .to_stream().to("out", key_serde=key_serde, value_serde=JsonSerde()))
    return b


def _run(records: list[tuple[Any, int, int]], fusion: bool, key_serde: Any,
         emit_on_commit: bool = False,
         ) -> tuple[Any, ...]:
    # Emitting on commit, a commit every 7 records: updates of one key coalesce in between.
    with TopologyTestDriver(_topology(key_serde, emit_on_commit), fusion=fusion,
                            check_store_round_trip=False,
                            commit_every=7 if emit_on_commit else 1) as driver:
        driver.input_topic("in", key_serde, JsonSerde()).pipe_many(records)
        store = driver.get_store("totals")
        buffered = sorted(store._buffer._buf.items())
        cache = dict(store._cache)
        # Updates waiting for the commit (emit_on_commit): the Change's old value too, which
        # only table operators downstream would show.
        agg = next(p for task in driver._tasks.values() for p in task._processors.values()
                   if isinstance(p, AggregateOp))
        pending = [(k, r.value.old, r.value.new, r.timestamp, r.offset)
                   for k, r in agg._pending.items()]
        driver.commit()
        local = sorted(store.backend.range(None, None))
        out = [(r.key, r.value, r.timestamp)
               for r in driver.output_topic("out", key_serde, JsonSerde())
               .read_records_to_list()]
    return out, buffered, cache, local, pending


inputs = st.lists(st.tuples(st.sampled_from(["a", "b", "ü", ""]),
                            st.sampled_from([1, 2, DELETE]),
                            st.integers(0, 50)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(inputs, st.booleans())
def test_inline_store_write_equals_the_method_calls(records: list[tuple[str, int, int]],
                                                    emit_on_commit: bool) -> None:
    assert (_run(records, True, StringSerde(), emit_on_commit)
            == _run(records, False, StringSerde(), emit_on_commit))


def test_coalesced_updates_keep_the_first_old_value() -> None:
    records = [("a", 1, 0), ("a", 2, 1), ("b", 1, 2), ("b", 2, 3), ("b", DELETE, 4),
               ("b", 1, 5)]
    fused = _run(records, True, StringSerde(), emit_on_commit=True)
    assert fused == _run(records, False, StringSerde(), emit_on_commit=True)
    assert fused[4] == [("a", None, {"n": 2, "sum": 3}, 1, 1),
                        ("b", None, {"n": 1, "sum": 1}, 5, 5)]


@pytest.mark.parametrize("emit_on_commit", [False, True])
def test_non_str_keys_take_the_call(emit_on_commit: bool) -> None:
    records = [(i % 3, (1, 2, DELETE, 1)[i % 4], i) for i in range(30)]
    assert (_run(records, True, JsonSerde(), emit_on_commit)
            == _run(records, False, JsonSerde(), emit_on_commit))


def test_the_read_cache_evicts_as_the_method_does() -> None:
    records = [(f"k{i}", 1, i) for i in range(CACHE_ENTRIES + 50)] + [("k0", 2, 0)]
    assert _run(records, True, StringSerde()) == _run(records, False, StringSerde())


@pytest.mark.parametrize("fusion", [True, False])
def test_a_value_the_codec_refuses_fails_as_the_serde_does(fusion: bool) -> None:
    with pytest.raises(RecordError) as failed:
        _run([("a", 1, 0), ("a", HUGE, 0)], fusion, StringSerde())
    assert "cannot encode dict as JSON" in str(failed.value)
    assert "in[0]@1" in str(failed.value)
