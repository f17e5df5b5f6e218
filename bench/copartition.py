"""Does an assignor keep co-partitioned topics together? librdkafka's `range` vs
`cooperative-sticky` (classic protocol), and the KIP-848 consumer protocol's server-side
`range` and `uniform` assignors, measured on a real broker.

    python bench/copartition.py [--rounds 6] [--partitions 6] [--modes range,...]

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


MODES = ("range", "cooperative-sticky", "consumer:range", "consumer:uniform")
"""Classic-protocol assignors by name; "consumer:<assignor>" is the KIP-848 protocol
(`group.protocol=consumer`) with that server-side assignor. Its session timeout is the
broker's (`group.consumer.session.timeout.ms`, 45 s by default and at least 45 s unless the
broker's minimum is lowered), so a dead member is noticed far later than with the 6 s here."""


def member_config(servers: str, group: str, mode: str) -> dict[str, object]:
    if mode.startswith("consumer:"):
        return {"bootstrap.servers": servers, "group.id": group, "group.protocol": "consumer",
                "group.remote.assignor": mode.split(":", 1)[1]}
    return {"bootstrap.servers": servers, "group.id": group,
            "partition.assignment.strategy": mode,
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


class Member:
    def __init__(self, servers: str, group: str, topics: list[str], strategy: str) -> None:
        self.owned: set[tuple[str, int]] = set()
        self.revoked: set[tuple[str, int]] = set()  # since the last settled assignment
        self.consumer = Consumer(member_config(servers, group, strategy))
        # Incremental assignment: the callbacks name only what is added or taken away.
        self.cooperative = strategy == "cooperative-sticky" or strategy.startswith("consumer:")
        self.consumer.subscribe(topics, on_assign=self._assign, on_revoke=self._revoke)

    def _assign(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        got = {(tp.topic, tp.partition) for tp in tps}
        self.owned = self.owned | got if self.cooperative else got

    def _revoke(self, consumer: Consumer, tps: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in tps}
        self.revoked |= gone
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


def run(servers: str, strategy: str, rounds: int, partitions: int
        ) -> tuple[int, int, int, list[str]]:
    a, b = unique("cop-a"), unique("cop-b")
    create_topics(servers, [a, b], partitions)
    group = unique(f"cop-{strategy.replace(':', '-')}")
    members: list[Member] = []
    kept = checked = stopped = 0
    notes = []
    plan = ["join", "join", "join", "leave", "join", "leave", "leave", "join"][:max(rounds, 3)]
    try:
        for step in plan:
            before = [set(m.owned) for m in members]
            for m in members:
                m.revoked = set()
            if step == "join":
                members.append(Member(servers, group, [a, b], strategy))
            else:
                before.pop(0)
                members.pop(0).close()
            sets = settle(members, 2 * partitions)
            # Partitions a member kept through the change but had to stop (revoked, then
            # given back): what an eager rebalance costs the partitions that did not move.
            stopped += sum(len(was & m.owned & m.revoked)
                           for was, m in zip(before, members, strict=False))
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
    return kept, checked, stopped, notes


_CHILD = """
import sys, time
from confluent_kafka import Consumer
sys.path.insert(0, {bench!r})
from copartition import member_config
c = Consumer(member_config({servers!r}, {group!r}, {mode!r}))
c.subscribe([{a!r}, {b!r}], on_assign=lambda c, tps: print("assigned", flush=True))
end = time.monotonic() + 300
while time.monotonic() < end:
    c.poll(0.05)
"""


def failover(servers: str, mode: str, partitions: int) -> float:
    """Seconds from SIGKILL of one of two members until the survivor owns every partition."""
    import os
    import signal
    import subprocess
    import sys

    a, b = unique("fo-a"), unique("fo-b")
    create_topics(servers, [a, b], partitions)
    group = unique(f"fo-{mode.replace(':', '-')}")
    code = _CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), servers=servers,
                         group=group, mode=mode, a=a, b=b)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    survivor = Member(servers, group, [a, b], mode)
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and len(survivor.owned) in (0, 2 * partitions):
            survivor.poll()  # until the two members share the partitions
        if len(survivor.owned) in (0, 2 * partitions):
            raise TimeoutError(f"{mode}: the two members never shared the partitions")
        child.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        limit = killed + 120
        while time.monotonic() < limit and len(survivor.owned) < 2 * partitions:
            survivor.poll()
        if len(survivor.owned) < 2 * partitions:
            raise TimeoutError(f"{mode}: the survivor did not get every partition in 120 s")
        return time.monotonic() - killed
    finally:
        child.kill()
        child.wait()
        survivor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--failover", action="store_true",
                        help="also time SIGKILL of one of two members until the survivor "
                             "owns every partition")
    args = parser.parse_args()
    with bootstrap() as servers:
        if args.failover:
            for mode in args.modes.split(","):
                seconds = failover(servers, mode, args.partitions)
                print(f"{mode}: SIGKILL -> survivor owns every partition in {seconds:.1f} s")
        for strategy in args.modes.split(","):
            kept, checked, stopped, notes = run(servers, strategy, args.rounds, args.partitions)
            print(f"{strategy}: co-partitioning kept in {kept}/{checked} settled assignments; "
                  f"{stopped} times a partition that stayed with its member was stopped")
            for note in notes:
                print(f"  {note}")


if __name__ == "__main__":
    main()
