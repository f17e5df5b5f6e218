"""Does an assignor keep co-partitioned topics together? librdkafka's `range` vs
`cooperative-sticky`, measured on a real broker.

    python bench/copartition.py [--rounds 6] [--partitions 6]

Two topics with the same partition count, one consumer group whose members subscribe to both
(as a kstream instance subscribes to a join's two inputs). Members join one by one up to 3,
then leave and join again, `--rounds` membership changes in all; after each change settles,
every member's partitions of topic A must equal its partitions of topic B (partition N of
both on one instance), or a join task would see only one side. Prints, per assignor, how many
settled assignments kept that. Why it matters: kstream keeps eager `range` because of it
(README, "Deploying").
"""

from __future__ import annotations

import argparse
import time

from _common import bootstrap, create_topics, unique
from confluent_kafka import Consumer, TopicPartition

SETTLE_S = 60.0


class Member:
    def __init__(self, servers: str, group: str, topics: list[str], strategy: str) -> None:
        self.owned: set[tuple[str, int]] = set()
        self.consumer = Consumer({"bootstrap.servers": servers, "group.id": group,
                                  "partition.assignment.strategy": strategy,
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        self.cooperative = strategy == "cooperative-sticky"
        self.consumer.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke)

    def _assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        got = {(tp.topic, tp.partition) for tp in tps}
        self.owned = self.owned | got if self.cooperative else got

    def _revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in tps}
        self.owned = self.owned - gone if self.cooperative else set()

    def poll(self) -> None:
        self.consumer.poll(0.05)

    def close(self) -> None:
        self.consumer.close()


def settle(members: list[Member], total: int) -> list[set[tuple[str, int]]]:
    """Poll every member until the assignment covers every partition exactly once."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        for m in members:
            m.poll()
        sets = [m.owned for m in members]
        if all(sets) and sum(map(len, sets)) == total == len(set().union(*sets)):
            # Settled for a moment: poll a little more so any follow-up rebalance shows.
            for _ in range(20):
                for m in members:
                    m.poll()
            if [m.owned for m in members] == sets:
                return sets
    raise TimeoutError("the group did not settle")


def run(servers: str, strategy: str, rounds: int, partitions: int) -> tuple[int, int, list[str]]:
    a, b = unique("cop-a"), unique("cop-b")
    create_topics(servers, [a, b], partitions)
    group = unique(f"cop-{strategy}")
    members: list[Member] = []
    kept = checked = 0
    notes = []
    plan = ["join", "join", "join", "leave", "join", "leave", "leave", "join"][:max(rounds, 3)]
    try:
        for step in plan:
            if step == "join":
                members.append(Member(servers, group, [a, b], strategy))
            else:
                members.pop(0).close()
            sets = settle(members, 2 * partitions)
            checked += 1
            together = all({p for t, p in s if t == a} == {p for t, p in s if t == b}
                           for s in sets)
            kept += together
            notes.append(f"{step}->{len(members)}: " + " | ".join(
                f"A{sorted(p for t, p in s if t == a)} B{sorted(p for t, p in s if t == b)}"
                for s in sets))
    finally:
        for m in members:
            m.close()
    return kept, checked, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    with bootstrap() as servers:
        for strategy in ("range", "cooperative-sticky"):
            kept, checked, notes = run(servers, strategy, args.rounds, args.partitions)
            print(f"{strategy}: co-partitioning kept in {kept}/{checked} settled assignments")
            for note in notes:
                print(f"  {note}")


if __name__ == "__main__":
    main()
