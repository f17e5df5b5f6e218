"""Throughput smoke test: 10k records through a stateless chain (timing printed, not asserted)."""

from __future__ import annotations

import time

import pytest

from kstream import StreamBuilder
from kstream.testing import TopologyTestDriver


def test_ten_thousand_records(capsys: pytest.CaptureFixture[str]) -> None:
    b = StreamBuilder()
    (b.stream("in", key_serde="string", value_serde="json")
     .filter(lambda k, v: v["n"] % 3 != 0)
     .map_values(lambda v: v["n"] * 2)
     .to("out", key_serde="string", value_serde="int64"))
    n = 10_000
    with TopologyTestDriver(b, partitions={"in": 4, "out": 4}) as driver:
        src = driver.input_topic("in", "string", "json", advance_ms=1)
        start = time.perf_counter()
        src.pipe_many((f"k{i}", {"n": i}) for i in range(n))
        elapsed = time.perf_counter() - start
        out = driver.output_topic("out", "string", "int64")
        assert out.queue_size() == n - len(range(0, n, 3))
        values = out.read_values_to_list()
    assert sorted(values) == sorted(i * 2 for i in range(n) if i % 3)
    with capsys.disabled():
        print(f"\n[driver] piped {n} records in {elapsed * 1000:.0f} ms "
              f"({n / elapsed:,.0f} records/s, commit after each)")
