"""`kstream describe`, the mermaid text and its SVG drawing, URL keys, advertised endpoints:
no broker needed."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from kstream.cli import main
from kstream.describe import describe_mermaid, describe_text
from kstream.diagram import parse_mermaid, render_svg
from kstream.hosts import advertised_client_id, endpoint_of
from kstream.server import BadRequest, parse_key
from serdes import (
    BytesSerde,
    Int64Serde,
    JsonSerde,
    StringSerde,
    TupleKeySerde,
    UUIDSerde,
)
from topologies import atm, wordcount


def test_describe_text_names_topics_internal_topics_and_stores() -> None:
    text = describe_text(wordcount.build("lines", "counts"), "wc", "wc-dlq")
    assert "Sub-topology: 0" in text and "Sub-topology: 1" in text
    assert "input:  lines" in text and "output: counts" in text
    assert "wc-word-counts-changelog (changelog)" in text
    assert "wc-word-counts-repartition (repartition)" in text
    assert "Dead-letter topic: wc-dlq (kept by `kstream reset`)" in text
    assert "word-counts: key-value, rocksdb, changelog wc-word-counts-changelog" in text


def test_cli_describe_prints_text_and_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "topologies.atm:app"]) == 0
    text = capsys.readouterr().out
    assert "Internal topics" in text and "window" in text and "session" in text
    assert main(["describe", "topologies.atm:app", "--mermaid"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR")
    assert "subgraph sub0" in mermaid and "-.-" in mermaid


@pytest.mark.parametrize("build", [wordcount.build, atm.build], ids=["wordcount", "atm"])
def test_mermaid_parses_back_and_draws_every_node_and_edge(build: Any) -> None:
    mermaid = describe_mermaid(build(), "app")
    chart = parse_mermaid(mermaid)
    node_lines = [line for line in mermaid.splitlines()
                  if re.match(r"\s+\w+(\[|\()", line) and "subgraph" not in line]
    edge_lines = [line for line in mermaid.splitlines() if "--" in line or "-.-" in line]
    assert len(chart.nodes) == len(node_lines)
    assert len(chart.edges) == len(edge_lines)
    svg = render_svg(mermaid)
    assert svg.startswith('<svg id="topology-diagram"') and svg.endswith("</svg>")
    assert svg.count('class="node ') == len(chart.nodes)
    assert svg.count('class="edge"') == len(chart.edges)
    assert svg.count('class="subgraph"') == len(chart.groups)
    for node in chart.nodes.values():
        assert f">{node.label}</text>" in svg
    sizes = re.search(r'viewBox="0 0 (\d+) (\d+)"', svg)
    assert sizes is not None and 0 < int(sizes[1]) < 5000 and 0 < int(sizes[2]) < 5000


def test_diagram_escapes_labels_and_survives_cycles() -> None:
    svg = render_svg('flowchart LR\n  a["<b>&"]\n  a --> b\n  b --> a\n')
    assert "&lt;b&gt;&amp;" in svg and "<b>" not in svg
    assert render_svg("flowchart LR\n").startswith("<svg")


def test_url_keys_follow_the_store_key_serde() -> None:
    assert parse_key(StringSerde(), "42") == "42"
    assert parse_key(Int64Serde(), "42") == 42
    assert parse_key(BytesSerde(), "ab") == b"ab"
    some = uuid.uuid4()
    assert parse_key(UUIDSerde(), str(some)) == some
    assert parse_key(JsonSerde(), "42") == 42
    assert parse_key(JsonSerde(), "card-1") == "card-1"  # not JSON: the string
    assert parse_key(JsonSerde(), '"7"') == "7"
    assert parse_key(TupleKeySerde(), '["card", [1, 2]]') == ("card", (1, 2))
    with pytest.raises(BadRequest):
        parse_key(Int64Serde(), "x")


def test_endpoint_rides_in_the_client_id() -> None:
    cid = advertised_client_id("wordcount", "10.0.0.7:8080")
    assert endpoint_of(cid) == "10.0.0.7:8080"
    assert endpoint_of(advertised_client_id("me@corp", "host:1")) == "host:1"
    assert endpoint_of("wordcount") is None
    assert endpoint_of("rdkafka") is None
    assert endpoint_of("x@nohostport") is None


@pytest.mark.parametrize(("settings", "message"), [
    ({"application_server": "nohost"}, "application_server"),
    ({"application_server": "host:99999"}, "application_server"),
    ({"query_port": 0}, "query_port"),
])
def test_query_settings_are_validated(settings: dict[str, Any], message: str) -> None:
    from kstream import App, ConfigError

    with pytest.raises(ConfigError, match=message):
        App(wordcount.build(), application_id="a", bootstrap_servers="127.0.0.1:1", **settings)


def test_advertised_server_defaults_to_hostname_and_query_port() -> None:
    import socket

    from kstream.config import AppConfig

    cfg = AppConfig.from_kwargs(application_id="a", bootstrap_servers="b", query_port=8080)
    assert cfg.advertised_server == f"{socket.gethostname()}:8080"
    assert AppConfig.from_kwargs(application_id="a", bootstrap_servers="b").advertised_server \
        is None
