"""Apps for the savepoint tests: word count (two value shapes) and windowed emit="final"."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from kstream import EXACTLY_ONCE, App, SessionWindows, StreamBuilder, TumblingWindows
from serdes import Int64Serde, JsonSerde, StringSerde

WORD = re.compile(r"[a-z0-9']+")


def wordcount(app_id: str, bootstrap: str, inp: str, out: str, state_dir: Path,
              shape: str = "int") -> App:
    """Counts per word; shape "int" stores ints, shape "dict" stores {"n": count}."""
    builder = StreamBuilder()
    grouped = (builder.stream(inp, key_serde=StringSerde(), value_serde=StringSerde())
               .flat_map_values(lambda line: WORD.findall(line.lower()))
               .group_by(lambda _key, word: word, key_serde=StringSerde()))
    if shape == "int":
        table = grouped.count("word-counts")
        table.to_stream().to(out, key_serde=StringSerde(), value_serde=Int64Serde())
    else:
        table = grouped.aggregate(lambda: {"n": 0}, _add, "word-counts",
                                  value_serde=JsonSerde())
        (table.to_stream().map_values(lambda v: v["n"])
         .to(out, key_serde=StringSerde(), value_serde=Int64Serde()))
    return App(builder, application_id=app_id, bootstrap_servers=bootstrap,
               processing_guarantee=EXACTLY_ONCE, state_dir=state_dir, commit_interval_ms=100)


def _add(_word: str, _value: str, agg: dict[str, Any]) -> dict[str, Any]:
    return {"n": agg["n"] + 1}


def windowed_final(app_id: str, bootstrap: str, inp: str, out: str, state_dir: Path,
                   retention: timedelta | None = None) -> App:
    """Emitted once per window when it closes (grace 0), to `out`:

    * every record counted per key in 10 s tumbling windows: key "T|<key>@<start>";
    * records with value "s" counted per key in sessions (3 s inactivity gap):
      key "S|<key>@<start>-<end>".

    `retention` keeps windows longer: another segment interval for both stores (the layout of
    their keys), with the same results."""
    builder = StreamBuilder()
    stream = builder.stream(inp, key_serde=StringSerde(), value_serde=StringSerde())
    (stream.group_by_key()
     .windowed_by(TumblingWindows(timedelta(seconds=10), grace=timedelta(0)))
     .count("win-counts", emit="final", retention=retention)
     .to_stream()
     .map(lambda w, n: (f"T|{w.key}@{w.start}", n))
     .to(out, key_serde=StringSerde(), value_serde=Int64Serde()))
    (stream.filter(lambda _key, value: value == "s")
     .group_by_key()
     .windowed_by(SessionWindows(timedelta(seconds=3), grace=timedelta(0)))
     .count("sess-counts", emit="final", retention=retention)
     .to_stream()
     .map(lambda w, n: (f"S|{w.key}@{w.start}-{w.end}", n))
     .to(out, key_serde=StringSerde(), value_serde=Int64Serde()))
    return App(builder, application_id=app_id, bootstrap_servers=bootstrap,
               processing_guarantee=EXACTLY_ONCE, state_dir=state_dir, commit_interval_ms=100)
