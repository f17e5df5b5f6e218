"""The failure bookkeeping of error_policy="fail" (kstream.runtime.lifecycle), without a broker.

With bad records in two partitions, the replay after the abort stops at whichever it reaches
first and commits exactly the records before that one; the app must report *that* record, or
the committed offset of the reported partition would not be the reported offset (seen on a
real broker: partition 0's bad record reported, the commit stopped at partition 1's).
"""

from __future__ import annotations

from kstream.errors import RecordError
from kstream.runtime.lifecycle import EngineLifecycle, EngineState


def test_the_replay_reports_the_bad_record_it_stopped_at() -> None:
    life = EngineLifecycle()
    life.to(EngineState.RUNNING)
    first = RecordError("deserialize", "t", 0, 300, ValueError("bad json"))
    second = RecordError("process", "t", 1, 500, ValueError("poison"))
    life.record_failed(first)
    life.record_failed(second)  # met while replaying towards the first
    assert life.failure is first  # what may_commit and the replay deadline go by
    assert not life.may_commit
    assert (life.stop_offset("t", 0), life.stop_offset("t", 1)) == (300, 500)
    assert life.failure_at("t", 1) is second
    assert life.failure_at("t", 0) is first
