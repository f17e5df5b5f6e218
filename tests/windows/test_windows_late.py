"""Late records: dropped from the aggregate, counted, optionally dead-lettered."""

from __future__ import annotations

from windows_helpers import count_driver, late_count, outputs, pipe

from kstream.windows import TumblingWindows


def test_late_records_are_dead_lettered_with_their_origin() -> None:
    driver = count_driver(TumblingWindows(10), late="dead_letter", application_id="lateapp")
    assert driver.topology.dlq_required
    with driver:
        pipe(driver, [("a", 25), ("a", 3), ("b", 19), ("a", 27)])
        assert [o[:4] for o in outputs(driver)] == [("a", 20, 30, 1), ("a", 20, 30, 2)]
        assert late_count(driver) == 2
        dlq = driver.output_topic("lateapp-dlq").read_records_to_list()
        assert [(r.key, r.value, r.timestamp) for r in dlq] == [
            (b"a", b'{"k":"a","ts":3}', 3), (b"b", b'{"k":"b","ts":19}', 19)]
        headers = dict(dlq[0].headers)
        assert headers["kstream.error.stage"] == b"late"
        assert headers["kstream.error.topic"] == b"in"
        assert headers["kstream.error.partition"] == b"0"
        assert headers["kstream.error.offset"] == b"1"
        assert headers["kstream.error.exception"] == b"LateRecord"
        assert b"stream time 25" in headers["kstream.error.message"]


def test_drop_policy_sends_nothing_and_needs_no_dlq() -> None:
    driver = count_driver(TumblingWindows(10))
    assert not driver.topology.dlq_required
    with driver:
        pipe(driver, [("a", 25), ("a", 3)])
        assert late_count(driver) == 1
        assert driver.output_topic("test-app-dlq").is_empty()


def test_grace_admits_out_of_order_records_until_the_window_closes() -> None:
    with count_driver(TumblingWindows(10, grace=10)) as driver:
        pipe(driver, [("a", 15), ("a", 5), ("a", 19), ("a", 6), ("a", 20), ("a", 7)])
        assert [o[1:4] for o in outputs(driver)] == [
            (10, 20, 1), (0, 10, 1), (10, 20, 2), (0, 10, 2), (20, 30, 1)]
        assert late_count(driver) == 1  # a@7 at stream time 20 = 10 + grace 10
