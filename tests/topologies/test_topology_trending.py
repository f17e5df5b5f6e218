"""trending: exact top-N updates in the driver (duplicate and mixed-case hashtags, ties,
out-of-order posts), the same final top N per window on the real broker, and
`kstream demo trending`."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
from topology_helpers import produce_like_driver, run_demo

from kstream import App
from kstream.testing import KafkaCluster, TopologyTestDriver, running_app, wait_until
from kstream.testing.driver import partition_for_key
from serdes import JsonSerde, StringSerde
from topologies import trending

T = 1_700_000_400_000  # a multiple of 10 minutes: windows start at T - 20 min, T - 10 min, ...
M = 60_000


def post(user: str, text: str, ts: int) -> tuple[str, dict[str, Any]]:
    return user, {"user": user, "text": text, "ts": T + ts}


def top(start: int, *ranked: tuple[str, int]) -> tuple[str, dict[str, Any]]:
    return trending.window_key(T + start), {
        "window_start": T + start, "window_end": T + start + trending.WINDOW,
        "top": [{"hashtag": tag, "count": n} for tag, n in ranked]}


def test_trending_top_n_in_the_driver() -> None:
    flush = " ".join(f"#{tag}" for tag in trending.FLUSH_TAGS)
    steps = [
        post("u1", "hello #kafka #python", 1 * M),
        post("u2", "#kafka rocks #Kafka", 2 * M),        # counted once per post, any case
        post("u3", "#python and #rust", 12 * M),
        post("u1", "#rust", 5 * M),                      # out of order: well within grace
        post("u4", "#ai", 45 * M),
        post("u5", "#kafka", 75 * M),                    # closes [-20, 10) (10 + 60 grace)
        post("u6", "#python #go", 3 * M),                # too late for [-20, 10), not for others
        post("z", flush, 200 * M),                       # closes every other window
    ]
    seen = []
    # One input partition, so one counting task and one stream time decide when windows close
    # (with N partitions the driver, like a broker, closes windows per counting task).
    with TopologyTestDriver(trending.build(), partitions={trending.INPUT: 1}) as driver:
        pipe = driver.input_topic(trending.INPUT, StringSerde(), JsonSerde())
        out = driver.output_topic(trending.OUTPUT, StringSerde(), JsonSerde())
        for step, (user, value) in enumerate(steps):
            pipe.pipe(user, value)
            seen += [(step, *kv) for kv in out.read_key_values_to_list()]
    assert seen == [
        (5, *top(-20 * M, ("kafka", 2), ("python", 1), ("rust", 1))),
        # #go (1) is fourth: not in the top 3; kafka and rust tie at 2, ordered by name
        (7, *top(-10 * M, ("python", 3), ("kafka", 2), ("rust", 2))),
        (7, *top(0, ("python", 3), ("kafka", 2), ("rust", 2))),
        (7, *top(10 * M, ("python", 1), ("rust", 1))),
        (7, *top(20 * M, ("ai", 1))),
        (7, *top(30 * M, ("ai", 1))),
        (7, *top(40 * M, ("ai", 1))),
        (7, *top(50 * M, ("kafka", 1))),
        (7, *top(60 * M, ("kafka", 1))),
        (7, *top(70 * M, ("kafka", 1))),
    ]


def test_trending_top_n_ignores_arrival_order() -> None:
    """Counts reach the top-N step from every counting partition in any order."""
    counts = [{"hashtag": tag, "count": n, "window_start": 0, "window_end": trending.WINDOW}
              for tag, n in [("b", 2), ("a", 2), ("c", 5), ("d", 1), ("e", 2)]]
    results = set()
    for order in itertools.permutations(counts):
        agg = trending._empty_top()
        for count in order:
            agg = trending._add_to_top("w", count, agg)
        results.add(orjson.dumps(agg))
    assert [orjson.loads(r)["top"] for r in results] == [
        [{"hashtag": "c", "count": 5}, {"hashtag": "a", "count": 2},
         {"hashtag": "b", "count": 2}]]


def test_trending_flush_tags_reach_every_partition() -> None:
    for partitions in range(1, 5):
        assert {partition_for_key(tag.encode(), partitions)
                for tag in trending.FLUSH_TAGS} == set(range(partitions))


def test_trending_on_kafka_matches_the_in_process_run(kafka: KafkaCluster, topic_factory,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    """Three input partitions: the flush post goes in only once the app consumed the rest (a
    partition read to its end first could otherwise carry it ahead of other posts)."""
    sample = trending.generate(400)
    posts, flush = sample[:-1], sample[-1:]
    with TopologyTestDriver(trending.build(), partitions={trending.INPUT: 3}) as driver:
        pipe = driver.input_topic(trending.INPUT, StringSerde(), JsonSerde())
        for _, user, value, ts in sample:
            pipe.pipe(user, value, ts)
        want = driver.output_topic(trending.OUTPUT, StringSerde(),
                                   JsonSerde()).read_key_values_to_dict()
    assert len(want) >= 6

    inp, outp = topic_factory(partitions=3), topic_factory(partitions=3)
    produce_like_driver(kafka, inp, 3, posts)
    app = App(trending.build(inp, outp), application_id=kafka.unique_name("trending"),
              bootstrap_servers=kafka.bootstrap_servers, processing_guarantee="exactly_once",
              state_dir=tmp_path)
    with running_app(app):
        # posts + one repartitioned record per hashtag; no window closes before the flush
        consumed = len(posts) + sum(len(trending.hashtags(v["text"])) for _, _, v, _ in posts)
        wait_until(lambda: app.stats.get("records_in", 0) >= consumed, 90,
                   "the app to consume the posts and their hashtags")
        produce_like_driver(kafka, inp, 3, flush)

        def final_tops() -> dict[str, Any] | None:
            got = {r.key.decode(): orjson.loads(r.value)  # type: ignore[union-attr, arg-type]
                   for r in kafka.read_topic(outp, timeout=30)}
            return got if got == want else None

        wait_until(final_tops, 90, "the final top 3 of every window", interval=0.5)


def test_trending_demo_command_prints_results(kafka: KafkaCluster) -> None:
    proc = run_demo(kafka, "trending", 300)
    assert "produced 300 sample records" in proc.stdout
    assert "top 3 hashtags in 8 windows of 30 min (every 10 min):" in proc.stdout
    assert "#launchday" in proc.stdout
