"""Word count: lines of text → words → a running count per word (a table), exactly-once.

    lines ──flat_map_values(split)──► group_by(word) ──► count("word-counts") ──► word-counts
"""

from __future__ import annotations

import os
import random
import re

from kstream import EXACTLY_ONCE, App, Record, StreamBuilder, Topology
from kstream.demo import DemoSpec
from serdes import Int64Serde, StringSerde

INPUT = "wordcount-lines"
OUTPUT = "wordcount-counts"
WORD = re.compile(r"[a-z0-9']+")


def build(input_topic: str = INPUT, output_topic: str = OUTPUT) -> Topology:
    builder = StreamBuilder()
    counts = (builder.stream(input_topic, key_serde=StringSerde(), value_serde=StringSerde())
              .flat_map_values(lambda line: WORD.findall(line.lower()))
              .group_by(lambda _key, word: word, key_serde=StringSerde())
              .count("word-counts"))
    counts.to_stream().to(output_topic, key_serde=StringSerde(), value_serde=Int64Serde())
    return builder.build()


app = App(build(), application_id="wordcount",
          bootstrap_servers=os.environ.get("KSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
          processing_guarantee=EXACTLY_ONCE, auto_create_topics=True, topic_partitions=3)

_PHRASES = ["the quick brown fox", "jumps over the lazy dog", "kafka streams in python",
            "exactly once or not at all", "the fox and the dog", "stream processing is fun"]


def generate(count: int) -> list[tuple[str, str | None, str, int]]:
    rng = random.Random(7)
    return [(INPUT, None, rng.choice(_PHRASES), 1_700_000_000_000 + i) for i in range(count)]


def final_counts(records: list[Record]) -> dict[str, int]:
    return {r.key: r.value for r in records}


def summarize(outputs: dict[str, list[Record]]) -> str:
    counts = final_counts(outputs[OUTPUT])
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    width = max((len(w) for w, _ in top), default=4)
    lines = [f"{len(outputs[OUTPUT])} count updates for {len(counts)} words; top 10:"]
    lines += [f"  {word:<{width}}  {n}" for word, n in top]
    return "\n".join(lines)


DEMO = DemoSpec(build=build, inputs={INPUT: 3},
                input_serdes={INPUT: (StringSerde(), StringSerde())},
                outputs={OUTPUT: (StringSerde(), Int64Serde())},
                generate=generate, summarize=summarize, default_records=2000,
                settings={"processing_guarantee": EXACTLY_ONCE})
