"""Timestamp order across a task's input partitions (Kafka Streams' PartitionGroup).

A task that reads several partitions (a join's two sides, a merge) must see their records in
timestamp order, or a backlog fetched one topic at a time makes stream time jump ahead on one
side and the other side's records look late. librdkafka hands out whole fetches of one
partition at a time (often hours of record time), so the engine holds such tasks' records in
per-partition queues and releases them lowest timestamp first.

Release rule (Kafka Streams with `max.task.idle.ms`): while every partition of the task has a
record queued, release the smallest head. When one is empty:
  - if the consumer has not reached its end (no end-of-partition event since its last record),
    more is on its way: wait for it, at most FETCH_WAIT_CAP_S (then release, and log it).
    Kafka Streams waits without a limit here; the cap only bounds how long a partition whose
    fetches stopped (its leader gone) holds the others up. It must stay well above a fetch's
    round trip on a loaded machine: at 2 s, a backlog join with no grace on a 2-core machine
    under a load average of 15 dropped 9 % of its pairs as late;
  - if it is at its end, wait `max_task_idle_ms` for new data (0: release at once; -1: never
    wait).
Equal timestamps go by (topic, partition). Order is by the record's Kafka timestamp, not a
source's timestamp extractor (which runs only when the record is processed).

Invariants:
  - records of one partition keep their offset order (queues are FIFO);
  - a held record is never committed as consumed: `held_offsets` gives each partition's first
    held offset and the engine commits that instead of the consumer's position;
  - a queue over `max_buffered` pauses its partition; it resumes once below half of it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, TopicPartition

log = logging.getLogger("kstream.ordering")

FETCH_WAIT_CAP_S = 30.0
TP = tuple[str, int]


class PartitionGroup:
    """One task's input partitions: queues, end-of-partition flags, and the release rule."""

    def __init__(self, partitions: Iterable[TP], max_idle_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queues: dict[TP, deque[Any]] = {tp: deque() for tp in sorted(partitions)}
        self._ordered_queues = list(self.queues.values())  # by (topic, partition): tie order
        self._at_end: dict[TP, bool] = dict.fromkeys(self.queues, False)
        self._idle_since: dict[TP, float | None] = dict.fromkeys(self.queues, None)
        self._gave_up: dict[TP, bool] = {}  # logged once per empty spell
        self._next_offset: dict[TP, int] = {}  # past the last record queued, per partition
        self.redelivered = 0
        self._max_idle_s = max_idle_ms / 1000
        self._clock = clock

    def add(self, tp: TP, msgs: list[Any]) -> None:
        # Invariant: a record is queued at most once per assignment (until `clear`). This
        # group pauses and resumes partitions all the time, and librdkafka has re-delivered
        # records already handed out around a pause/resume (librdkafka#2593, #4637); queued
        # twice they would be processed, and committed, twice.
        expected = self._next_offset.get(tp)
        if expected is not None and msgs[0].offset() < expected:
            fresh = [m for m in msgs if m.offset() >= expected]
            self.redelivered += len(msgs) - len(fresh)
            log.warning("event=redelivered partition=%s:%d offsets=%d..%d expected=%d",
                        tp[0], tp[1], msgs[0].offset(), msgs[-1].offset(), expected)
            if not fresh:
                return
            msgs = fresh
        self._next_offset[tp] = msgs[-1].offset() + 1
        self.queues[tp].extend(msgs)
        self._at_end[tp] = False
        self._idle_since[tp] = None
        self._gave_up[tp] = False

    def end_reached(self, tp: TP) -> None:
        self._at_end[tp] = True

    def release(self, out: list[Any]) -> None:
        """Append what may be processed now to `out`, lowest timestamp first."""
        queues = self._ordered_queues
        while True:
            ready = [q for q in queues if q]
            if not ready:
                return
            if len(ready) < len(queues) and self._must_wait():
                return
            if len(ready) == 1:
                # The others are empty and not waited for: nothing can come between (no new
                # fetch happens inside this call), so the whole queue goes, in offset order.
                out.extend(ready[0])
                ready[0].clear()
                return
            if len(ready) == 2:
                self._merge_two(ready[0], ready[1], out)
                continue
            head = min(ready, key=lambda q: q[0].timestamp()[1])  # first minimum: tp order
            out.append(head.popleft())

    @staticmethod
    def _merge_two(first: deque[Any], second: deque[Any], out: list[Any]) -> None:
        """Until one runs dry: the lower head goes; a tie goes to `first` (lower tp)."""
        append = out.append
        a_ts = first[0].timestamp()[1]
        b_ts = second[0].timestamp()[1]
        while True:
            if a_ts <= b_ts:
                append(first.popleft())
                if not first:
                    return
                a_ts = first[0].timestamp()[1]
            else:
                append(second.popleft())
                if not second:
                    return
                b_ts = second[0].timestamp()[1]

    def _must_wait(self) -> bool:
        now = self._clock()
        for tp, queue in self.queues.items():
            if queue:
                continue
            since = self._idle_since[tp]
            if since is None:
                since = self._idle_since[tp] = now
            if self._at_end[tp]:
                if self._max_idle_s >= 0 and now - since < self._max_idle_s:
                    return True
            elif now - since < FETCH_WAIT_CAP_S:
                return True
            elif not self._gave_up.get(tp):
                self._gave_up[tp] = True
                log.info("event=ordering_gave_up_waiting partition=%s:%d waited_s=%.1f",
                         tp[0], tp[1], now - since)
        return False

    def held(self) -> dict[TP, int]:
        return {tp: q[0].offset() for tp, q in self.queues.items() if q}

    def clear(self) -> None:
        """After a rewind: the consumer fetches from the committed offsets again."""
        self._next_offset.clear()
        for tp, queue in self.queues.items():
            queue.clear()
            self._at_end[tp] = False
            self._idle_since[tp] = None


class InputOrderer:
    """The engine's view: splits a consumed batch into records to process now (in order) and
    records held back for their task's other partitions. Only multi-partition tasks pay."""

    def __init__(self, max_idle_ms: int, max_buffered: int,
                 pause: Callable[[list[TopicPartition]], None],
                 resume: Callable[[list[TopicPartition]], None]) -> None:
        self._max_idle_ms = max_idle_ms
        self._max_buffered = max_buffered
        self._pause = pause
        self._resume = resume
        self._group_of: dict[TP, PartitionGroup] = {}
        self._groups: list[PartitionGroup] = []
        self._paused: set[TP] = set()

    @property
    def active(self) -> bool:
        return bool(self._groups)

    def assign(self, task_partitions: Iterable[list[TP]]) -> None:
        """One group per task with more than one input partition."""
        self.reset()
        self._group_of, self._groups = {}, []
        for partitions in task_partitions:
            if len(partitions) < 2:
                continue
            group = PartitionGroup(partitions, self._max_idle_ms)
            self._groups.append(group)
            for tp in partitions:
                self._group_of[tp] = group

    def order(self, msgs: list[Any]) -> list[Any]:
        """The batch's records to process now: untouched ones in consumption order, then the
        held tasks' releases. Error events stay in place (the engine handles them)."""
        group_of = self._group_of
        out: list[Any] = []
        run: list[Any] = []
        run_tp: TP | None = None
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    tp = (msg.topic(), msg.partition())
                    if tp in group_of:
                        self._flush(run_tp, run, out)
                        run, run_tp = [], None
                        group_of[tp].end_reached(tp)
                    continue
                out.append(msg)
                continue
            tp = (msg.topic(), msg.partition())
            if tp != run_tp:
                self._flush(run_tp, run, out)
                run, run_tp = [], tp
            run.append(msg)
        self._flush(run_tp, run, out)
        self._release(out)
        return out

    def release_due(self) -> list[Any]:
        """Records whose wait ran out while no batch came (idle partitions)."""
        out: list[Any] = []
        self._release(out)
        return out

    def _flush(self, tp: TP | None, run: list[Any], out: list[Any]) -> None:
        if tp is None or not run:
            return
        group = self._group_of.get(tp)
        if group is None:
            out.extend(run)
            return
        group.add(tp, run)

    def _release(self, out: list[Any]) -> None:
        for group in self._groups:
            group.release(out)
        self._apply_backpressure()

    def _apply_backpressure(self) -> None:
        pause, resume = [], []
        for tp, group in self._group_of.items():
            size = len(group.queues[tp])
            if tp not in self._paused and size > self._max_buffered:
                pause.append(tp)
            elif tp in self._paused and size <= self._max_buffered // 2:
                resume.append(tp)
        if pause:
            self._pause([TopicPartition(t, p) for t, p in pause])
            self._paused.update(pause)
        if resume:
            self._resume([TopicPartition(t, p) for t, p in resume])
            self._paused.difference_update(resume)

    def held_offsets(self) -> dict[TP, int]:
        """First held offset per partition: what a commit must name as consumed-up-to."""
        held: dict[TP, int] = {}
        for group in self._groups:
            held.update(group.held())
        return held

    def reset(self) -> None:
        """Drop held records (after a rewind the consumer fetches them again) and unpause."""
        for group in self._groups:
            group.clear()
        if self._paused:
            try:
                self._resume([TopicPartition(t, p) for t, p in self._paused])
            except Exception as exc:  # partitions may be gone after a revoke
                log.debug("event=resume_failed error=%s", exc)
            self._paused.clear()

