"""Fused operator chains behave exactly like the processors they replace."""

from __future__ import annotations

import pytest

from kstream import StreamBuilder
from kstream.testing import TopologyTestDriver
from serdes import StringSerde


def _topology() -> StreamBuilder:
    b = StreamBuilder()
    branches = (b.stream("in", StringSerde(), StringSerde())
                .split()
                .branch(lambda _k, v: v.startswith("x"), "x")
                .default_branch("rest"))
    # Rebinding the key inside a flat_map_values loop must not leak into the next value.
    (branches["rest"].flat_map_values(lambda v: v.split())
     .map(lambda k, item: (f"{k}:{item}", item.upper()))
     .filter(lambda _k, v: v != "SKIP")
     .to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    (b.stream("in2", StringSerde(), StringSerde())
     .flat_map_values(lambda v: v.split())
     .select_key(lambda k, v: f"{k}-{v}")
     .to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    branches["x"].to("out-x", key_serde=StringSerde(), value_serde=StringSerde())
    return b


@pytest.mark.parametrize("fusion", ["on", "off"])
def test_fused_and_unfused_chains_agree(fusion: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if fusion == "off":
        monkeypatch.setenv("KSTREAM_NO_FUSION", "1")
    with TopologyTestDriver(_topology()) as driver:
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "a skip b")
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "xyz")
        driver.input_topic("in2", StringSerde(), StringSerde()).pipe("j", "p q")
        out = driver.output_topic("out", StringSerde(), StringSerde())
        assert out.read_key_values_to_list() == [("k:a", "A"), ("k:b", "B"), ("j-p", "p"),
                                                 ("j-q", "q")]
        assert driver.output_topic("out-x", StringSerde(), StringSerde()) \
            .read_key_values_to_list() == [("k", "xyz")]
