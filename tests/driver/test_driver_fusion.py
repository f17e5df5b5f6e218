"""Fused operator chains behave exactly like the processors they replace."""

from __future__ import annotations

import linecache
import traceback

import pytest

from kstream import StreamBuilder
from kstream.config import AppConfig
from kstream.errors import RecordError
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


@pytest.mark.parametrize("fusion", [True, False])
def test_fused_and_unfused_chains_agree(fusion: bool) -> None:
    with TopologyTestDriver(_topology(), fusion=fusion) as driver:
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "a skip b")
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "xyz")
        driver.input_topic("in2", StringSerde(), StringSerde()).pipe("j", "p q")
        out = driver.output_topic("out", StringSerde(), StringSerde())
        assert out.read_key_values_to_list() == [("k:a", "A"), ("k:b", "B"), ("j-p", "p"),
                                                 ("j-q", "q")]
        assert driver.output_topic("out-x", StringSerde(), StringSerde()) \
            .read_key_values_to_list() == [("k", "xyz")]


def test_traceback_through_fused_code_shows_the_generated_lines() -> None:
    b = StreamBuilder()
    (b.stream("in", StringSerde(), StringSerde())
     .filter(lambda _k, v: v != "")
     .map_values(lambda v: 1 / 0)
     .to("out", key_serde=StringSerde(), value_serde=StringSerde()))
    with TopologyTestDriver(b) as driver, pytest.raises(RecordError) as raised:
        driver.input_topic("in", StringSerde(), StringSerde()).pipe("k", "v")
    linecache.checkcache()  # registered sources survive the periodic cache check
    text = "".join(traceback.format_exception(raised.value))
    assert "ZeroDivisionError" in text
    assert "<kstream fused source in#" in text  # the generated source handler
    assert "value = mapv" in text  # the generated line itself, not just its file name


def test_fusion_is_an_app_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AppConfig("app", "localhost:9092").fusion is True
    monkeypatch.setenv("KSTREAM_FUSION", "0")
    assert AppConfig.from_kwargs(application_id="app", bootstrap_servers="b:1").fusion is False
