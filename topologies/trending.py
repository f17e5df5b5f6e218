"""Trending hashtags: posts → hashtags → counts per hopping window → the top N per window.

    posts ─flat_map(hashtags)─► group by hashtag ─► hopping 30 min / 10 min, emit final
          ("trending-counts") ─map(key: window start)─► group ─► aggregate top N
          ("trending-top") ─► trending-top

Counts are final-only, so each (hashtag, window) reaches the top-N step exactly once and the
top N of a window is a pure function of its hashtags' counts: merging them one at a time and
keeping the best N (count descending, then hashtag name) gives the same result in any arrival
order, which matters because counts come from every partition of the counting step. The
top-N table is keyed by the window start (ISO-8601, UTC); its updates are coalesced per
commit, and the last one per key is the window's final top N.

The grace period is long (an hour): posts from phones that were offline still count, and
records from several input partitions reach the counting tasks in no particular order.
"""

from __future__ import annotations

import os
import random
import re
import time
from datetime import datetime, timezone
from typing import Any

from kstream import EXACTLY_ONCE, App, Record, StreamBuilder, Topology
from kstream.demo import DemoSpec
from kstream.windows import HoppingWindows, field_timestamp
from serdes import JsonSerde, StringSerde, Windowed

INPUT = "trending-posts"
OUTPUT = "trending-top"

MINUTE = 60_000
WINDOW = 30 * MINUTE
ADVANCE = 10 * MINUTE
GRACE = 60 * MINUTE
TOP_N = 3
HASHTAG = re.compile(r"#(\w+)")


def hashtags(text: str) -> list[str]:
    """Distinct hashtags of a post, lower-cased, in order of appearance."""
    return list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(text)))


def window_key(start_ms: int) -> str:
    return datetime.fromtimestamp(start_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags_of(user: str, post: dict[str, Any]) -> list[tuple[str, str]]:
    return [(tag, user) for tag in hashtags(post["text"])]


def _by_window(window: Windowed, count: int) -> tuple[str, dict[str, Any]]:
    return window_key(window.start), {"hashtag": window.key, "count": count,
                                      "window_start": window.start, "window_end": window.end}


def _empty_top() -> dict[str, Any]:
    return {"window_start": None, "window_end": None, "top": []}


def _add_to_top(_window: str, tag: dict[str, Any], agg: dict[str, Any]) -> dict[str, Any]:
    entries = [e for e in agg["top"] if e["hashtag"] != tag["hashtag"]]
    entries.append({"hashtag": tag["hashtag"], "count": tag["count"]})
    entries.sort(key=lambda e: (-e["count"], e["hashtag"]))
    return {"window_start": tag["window_start"], "window_end": tag["window_end"],
            "top": entries[:TOP_N]}


def build(input_topic: str = INPUT, output_topic: str = OUTPUT) -> Topology:
    builder = StreamBuilder()
    (builder.stream(input_topic, key_serde=StringSerde(), value_serde=JsonSerde(),
                    timestamp_extractor=field_timestamp("ts"))
     .flat_map(_tags_of)
     .group_by_key(key_serde=StringSerde(), value_serde=JsonSerde())
     .windowed_by(HoppingWindows(WINDOW, ADVANCE, grace=GRACE))
     .count("trending-counts", emit="final")
     .to_stream()
     .map(_by_window)
     .group_by_key(key_serde=StringSerde(), value_serde=JsonSerde())
     .aggregate(_empty_top, _add_to_top, "trending-top", emit_on_commit=True)
     .to_stream()
     .to(output_topic, key_serde=StringSerde(), value_serde=JsonSerde()))
    return builder.build()


app = App(build(), application_id="trending",
          bootstrap_servers=os.environ.get("KSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
          processing_guarantee=EXACTLY_ONCE, auto_create_topics=True, topic_partitions=3)


# -- sample data -------------------------------------------------------------------------------
SampleRecord = tuple[str, str, dict[str, Any], int]
_TAGS = ["kafka", "python", "streaming", "rust", "coffee", "music", "football", "travel"]
_PHRASES = ["just shipped it", "reading about", "can't stop thinking about", "hot take on",
            "weekend plans:", "thread on"]
# One post after everything else with hashtags on every partition of a 1-4 partition
# repartition topic (murmur2, see the tests): it moves stream time past every window's close.
FLUSH_TAGS = [f"flush{i}" for i in range(8)]
FLUSH_AFTER = WINDOW + GRACE + ADVANCE
SPAN = 60 * MINUTE  # at most GRACE: no window closes before the flush, in any arrival order


def base_time(now_ms: int | None = None) -> int:
    """Four hours before the current hour: recent enough for topic retention, and the same
    for every call within one hour."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - now % 3_600_000 - 4 * 3_600_000


def post(user: str, text: str, ts: int) -> SampleRecord:
    return (INPUT, user, {"user": user, "text": text, "ts": ts}, ts)


def generate(count: int, now_ms: int | None = None) -> list[SampleRecord]:
    """`count` posts: count - 1 over an hour with 1-3 hashtags each, #launchday rising through
    the hour, then the flush post; deterministic for a given count within one hour."""
    rng = random.Random(count)
    base = base_time(now_ms)
    users = [f"user-{i:03d}" for i in range(max(10, count // 20))]
    records = []
    for _ in range(count - 1):
        ts = base + rng.randrange(SPAN)
        rising = (ts - base) / SPAN  # 0 → 1 over the hour
        tags = rng.sample(_TAGS, rng.randint(1, 3))
        if rng.random() < 0.6 * rising:
            tags[0] = "launchday"
        text = f"{rng.choice(_PHRASES)} " + " ".join(f"#{t}" for t in tags)
        records.append(post(rng.choice(users), text, ts))
    records.sort(key=lambda r: r[3])
    if count > 0:
        end = max((r[3] for r in records), default=base) + FLUSH_AFTER
        records.append(post("flush", " ".join(f"#{t}" for t in FLUSH_TAGS), end))
    return records


# -- results -----------------------------------------------------------------------------------
def final_tops(records: list[Record]) -> dict[str, dict[str, Any]]:
    """The last top-N update per window: its final top N."""
    return {r.key: r.value for r in records}


def summarize(outputs: dict[str, list[Record]]) -> str:
    tops = final_tops(outputs[OUTPUT])
    lines = [f"top {TOP_N} hashtags in {len(tops)} windows of {WINDOW // MINUTE} min "
             f"(every {ADVANCE // MINUTE} min):"]
    for key in sorted(tops):
        top = tops[key]
        span = (f"{window_key(top['window_start'])[11:16]}-"
                f"{window_key(top['window_end'])[11:16]}")
        ranked = ", ".join(f"#{e['hashtag']} {e['count']}" for e in top["top"])
        lines.append(f"  {span} UTC  {ranked}")
    return "\n".join(lines)


# One input partition in the demo: every post, the flush post last, reaches the counting
# tasks in order (with several, a partition read to its end first could carry the flush post
# ahead of other partitions' posts, and those would be late).
DEMO = DemoSpec(build=build, inputs={INPUT: 1},
                input_serdes={INPUT: (StringSerde(), JsonSerde())},
                outputs={OUTPUT: (StringSerde(), JsonSerde())},
                generate=generate, summarize=summarize, default_records=2000,
                settings={"processing_guarantee": EXACTLY_ONCE})
