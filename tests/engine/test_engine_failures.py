"""Each class of Kafka error, injected into real clients on the real broker, leads to what
kstream.runtime.kafka_errors promises: abortable errors abort and rewind (output exact),
retriable restore errors are retried, fatal errors stop the app naming what failed."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from kstream import StreamBuilder
from kstream.config import AppConfig
from kstream.errors import FatalError
from kstream.runtime.clients import KafkaClients
from kstream.runtime.engine import Engine
from kstream.runtime.kafka_errors import ErrorClass, classify
from kstream.state import restore as restore_module
from kstream.testing import KafkaCluster, wait_until
from serdes import JsonSerde, StringSerde

RECORDS = 3000


def abortable(code: int = KafkaError._STATE) -> KafkaException:
    return KafkaException(KafkaError(code, "injected", txn_requires_abort=True))


def producer_fatal() -> KafkaException:
    return KafkaException(KafkaError(KafkaError.INVALID_TXN_STATE, "injected", fatal=True))


def config_fatal() -> KafkaException:
    return KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "injected"))


class FaultyClients(KafkaClients):
    """Real clients; `method` of the first producer raises `error` on its `nth` call."""

    def __init__(self, method: str, nth: int, error: KafkaException) -> None:
        self.method, self.nth, self.error = method, nth, error
        self.injected = threading.Event()
        self.producers = 0

    def producer(self, config: dict[str, Any]) -> Producer:
        self.producers += 1
        if self.producers > 1:
            return Producer(config)  # replacements work
        clients = self

        class Faulty(Producer):
            calls = 0

        def faulty(this: Producer, *args: Any, **kwargs: Any) -> Any:
            Faulty.calls += 1
            if Faulty.calls == clients.nth:
                clients.injected.set()
                raise clients.error
            return getattr(Producer, clients.method)(this, *args, **kwargs)

        setattr(Faulty, self.method, faulty)
        return Faulty(config)


def topology(inp: str, out: str) -> StreamBuilder:
    b = StreamBuilder()
    counts = (b.stream(inp, StringSerde(), JsonSerde())
              .group_by(lambda _k, v: f"k{v['id'] % 10}", key_serde=StringSerde())
              .count(name="per-key"))
    counts.to_stream().map_values(str).to(out, key_serde=StringSerde(),
                                          value_serde=StringSerde())
    return b


def run_engine(kafka: KafkaCluster, topic_factory: Any, tmp_path: Path,
               clients: KafkaClients) -> tuple[Engine, threading.Thread, str, list[BaseException]]:
    inp, out = topic_factory(partitions=2), topic_factory(partitions=2)
    kafka.produce(inp, ((str(i).encode(), orjson.dumps({"id": i})) for i in range(RECORDS)))
    config = AppConfig.from_kwargs(
        application_id=kafka.unique_name("failures"), bootstrap_servers=kafka.bootstrap_servers,
        processing_guarantee="exactly_once", state_dir=tmp_path, batch_size=200,
        commit_interval_ms=50)
    engine = Engine(topology(inp, out).build(), config, clients)
    errors: list[BaseException] = []

    def main() -> None:
        try:
            engine.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return engine, thread, out, errors


def assert_exact_counts(kafka: KafkaCluster, out: str) -> None:
    """Each key's updates are exactly 1..n: nothing lost, nothing duplicated."""
    per_key = RECORDS // 10
    records = kafka.read_topic(out, min_count=RECORDS, timeout=120)
    updates: dict[str, list[int]] = {}
    for r in records:
        updates.setdefault(r.key.decode(), []).append(int(r.value))  # type: ignore[union-attr,arg-type]
    assert len(records) == RECORDS
    assert {k: v for k, v in updates.items()} == {
        f"k{i}": list(range(1, per_key + 1)) for i in range(10)}


@pytest.mark.parametrize(("method", "nth", "error"), [
    ("produce", 700, abortable()),
    ("commit_transaction", 2, abortable()),
    ("send_offsets_to_transaction", 2, abortable(KafkaError.UNKNOWN_MEMBER_ID)),
    ("commit_transaction", 2, producer_fatal()),
    ("abort_transaction", 1, producer_fatal()),
], ids=["produce-abortable", "commit-abortable", "send-offsets-abortable",
        "commit-producer-fatal", "abort-fails-fatally"])
def test_abortable_errors_abort_rewind_and_go_on(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path, method: str, nth: int,
        error: KafkaException) -> None:
    clients = FaultyClients(method, nth, error)
    if method == "abort_transaction":
        # An abort happens only after another error: a commit fails first.
        clients = _AbortAfterCommitFails(error)
    engine, thread, out, errors = run_engine(kafka, topic_factory, tmp_path, clients)
    try:
        wait_until(lambda: clients.injected.is_set() or errors, 60, f"{method} to fail")
        assert_exact_counts(kafka, out)
        wait_until(lambda: engine.stats.recoveries >= 1, 30, "a recovery")
        assert not errors, errors
        assert thread.is_alive()
    finally:
        engine.request_stop()
        thread.join(60)
    assert not errors, errors
    if isinstance(error.args[0], KafkaError) and error.args[0].fatal():
        assert clients.producers >= 2  # the broken producer was replaced


class _AbortAfterCommitFails(FaultyClients):
    """commit_transaction fails (abortable), then abort_transaction fails fatally."""

    def __init__(self, error: KafkaException) -> None:
        super().__init__("abort_transaction", 1, error)

    def producer(self, config: dict[str, Any]) -> Producer:
        self.producers += 1
        if self.producers > 1:
            return Producer(config)
        clients = self

        class Faulty(Producer):
            commits = 0

            def commit_transaction(self, *args: Any) -> Any:
                Faulty.commits += 1
                if Faulty.commits == 2:
                    raise abortable()
                return super().commit_transaction(*args)

            def abort_transaction(self, *args: Any) -> Any:
                clients.injected.set()
                raise clients.error

        return Faulty(config)


def test_fatal_error_stops_naming_the_call(kafka: KafkaCluster, topic_factory: Any,
                                           tmp_path: Path) -> None:
    clients = FaultyClients("commit_transaction", 2, config_fatal())
    engine, thread, _out, errors = run_engine(kafka, topic_factory, tmp_path, clients)
    thread.join(90)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], FatalError)
    assert "commit_transaction" in str(errors[0])
    assert "TOPIC_AUTHORIZATION_FAILED" in str(errors[0])
    assert engine.life.state.value == "stopped"


def test_restore_retries_a_retriable_metadata_error(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a broker restart the watermark call answers NOT_LEADER_FOR_PARTITION."""
    calls = Counter[str]()

    class Flaky(Consumer):
        def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> Any:
            calls["watermarks"] += 1
            if calls["watermarks"] <= 3:
                raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, "injected"))
            return super().get_watermark_offsets(*args, **kwargs)

    monkeypatch.setattr(restore_module, "Consumer", Flaky)
    engine, thread, out, errors = run_engine(kafka, topic_factory, tmp_path, KafkaClients())
    try:
        assert_exact_counts(kafka, out)
    finally:
        engine.request_stop()
        thread.join(60)
    assert not errors, errors
    assert calls["watermarks"] > 3


def test_restore_stops_on_a_fatal_metadata_error(
        kafka: KafkaCluster, topic_factory: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Denied(Consumer):
        def get_watermark_offsets(self, *args: Any, **kwargs: Any) -> Any:
            raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "injected"))

    monkeypatch.setattr(restore_module, "Consumer", Denied)
    _engine, thread, _out, errors = run_engine(kafka, topic_factory, tmp_path, KafkaClients())
    thread.join(90)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert "per-key" in str(errors[0]) and "TOPIC_AUTHORIZATION_FAILED" in str(errors[0])


@pytest.mark.parametrize(("error", "expected"), [
    (KafkaError(KafkaError._ALL_BROKERS_DOWN), ErrorClass.RETRIABLE),
    (KafkaError(KafkaError._TRANSPORT), ErrorClass.RETRIABLE),
    (KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION), ErrorClass.RETRIABLE),
    (KafkaError(KafkaError._TIMED_OUT, retriable=True), ErrorClass.RETRIABLE),
    (KafkaError(KafkaError._STATE), ErrorClass.ABORTABLE),
    (KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, txn_requires_abort=True),
     ErrorClass.ABORTABLE),
    (KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True), ErrorClass.ABORTABLE),
    (KafkaError(KafkaError._FENCED, fatal=True), ErrorClass.FENCED),
    (KafkaError(KafkaError.PRODUCER_FENCED), ErrorClass.FENCED),
    (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), ErrorClass.FATAL),
    (KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, fatal=True),
     ErrorClass.FATAL),
    (KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), ErrorClass.FATAL),
])
def test_classification(error: KafkaError, expected: ErrorClass) -> None:
    assert classify(error) is expected
