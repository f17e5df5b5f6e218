"""Table.filter forwards a delete only for keys whose value it had forwarded (issue 15,
point 4): an update that fails the predicate, or a tombstone, for a key that never passed
sends nothing downstream."""

from __future__ import annotations

from kstream import StreamBuilder
from kstream.testing import TopologyTestDriver
from serdes import Int64Serde, StringSerde


def test_filter_sends_no_tombstone_for_keys_that_never_passed() -> None:
    b = StreamBuilder()
    (b.table("in", StringSerde(), Int64Serde(), name="t").filter(lambda _k, v: v > 10)
     .to_stream().to("out", StringSerde(), Int64Serde()))
    with TopologyTestDriver(b) as driver:
        pipe = driver.input_topic("in", StringSerde(), Int64Serde())
        out = driver.output_topic("out", StringSerde(), Int64Serde())
        pipe.pipe("never", 5)      # fails: nothing
        pipe.pipe("never", None)   # deleted, never passed: nothing
        pipe.pipe("ghost", None)   # never existed: nothing
        assert out.read_key_values_to_list() == []
        pipe.pipe("k", 20)         # passes
        pipe.pipe("k", 30)         # still passes
        pipe.pipe("k", 3)          # stops passing: one tombstone
        pipe.pipe("k", 2)          # still failing: nothing more
        pipe.pipe("k", None)       # deleted while filtered out: nothing
        assert out.read_key_values_to_list() == [("k", 20), ("k", 30), ("k", None)]
