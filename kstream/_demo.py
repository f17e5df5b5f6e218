"""`kstream demo <name>`: generator → topology → results read back from the output topics.

Uses KSTREAM_BOOTSTRAP_SERVERS or `--bootstrap-servers`, else a running `kstream broker`, else
starts a local broker for the length of the demo.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from kstream.app import App
from kstream.broker import LocalBroker, background_status
from kstream.demo import DemoSpec
from kstream.record import Record
from kstream.testing.kafka import KafkaCluster, wait_until
from serdes import resolve

log = logging.getLogger("kstream.demo")
QUIET_S = 2.0  # outputs unchanged this long after all input was consumed: the demo is done


@contextlib.contextmanager
def _cluster(bootstrap: str | None) -> Iterator[KafkaCluster]:
    import os

    bootstrap = bootstrap or os.environ.get("KSTREAM_BOOTSTRAP_SERVERS")
    running = background_status()
    if bootstrap or running:
        yield KafkaCluster(bootstrap or str(running["bootstrap"]))  # type: ignore[index]
        return
    print("starting a local Apache Kafka broker (first run resolves its jars with Maven)...")
    started = time.monotonic()
    with LocalBroker() as broker:
        print(f"broker ready at {broker.bootstrap_servers} in {time.monotonic() - started:.1f}s")
        yield KafkaCluster(broker.bootstrap_servers)


def load_spec(name: str) -> DemoSpec:
    try:
        module = importlib.import_module(f"topologies.{name}")
    except ModuleNotFoundError:
        raise SystemExit(f"no reference topology named {name!r} (see topologies/)") from None
    return module.DEMO


def run_demo(name: str, records: int | None = None, bootstrap: str | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    spec = load_spec(name)
    count = records or spec.default_records
    run = uuid.uuid4().hex[:6]
    with _cluster(bootstrap) as kafka:
        # Fresh topic names per run, so a demo never reads an earlier run's results.
        rename = {t: f"{t}-{run}" for t in [*spec.inputs, *spec.outputs]}
        for topic, partitions in spec.inputs.items():
            kafka.create_topic(rename[topic], partitions)
        for topic in spec.outputs:
            kafka.create_topic(rename[topic], max(spec.inputs.values()))
        produced = _produce(kafka, spec, count, rename)
        print(f"produced {produced} sample records to {', '.join(rename[t] for t in spec.inputs)}")
        topology = _renamed_topology(spec, rename)
        app = App(topology, application_id=f"demo-{name}-{run}",
                  bootstrap_servers=kafka.bootstrap_servers,
                  state_dir=tempfile.mkdtemp(prefix="kstream-demo-"), **spec.settings)
        outputs = _run_until_quiet(app, kafka, spec, rename, produced)
        # Close every client before a broker we started goes away, or librdkafka logs
        # reconnect attempts over the results.
        del app
        kafka.close()
        gc.collect()
    print(f"\n{name}: results read back from the output topics\n")
    print(spec.summarize(outputs))
    return 0


def _produce(kafka: KafkaCluster, spec: DemoSpec, count: int, rename: dict[str, str]) -> int:
    by_topic: dict[str, list[tuple[Any, Any, int]]] = {}
    for topic, key, value, ts in spec.generate(count):
        by_topic.setdefault(topic, []).append((key, value, ts))
    total = 0
    for topic, rows in by_topic.items():
        key_serde, value_serde = (resolve(s) for s in spec.input_serdes[topic])
        total += kafka.produce(rename[topic], ((key_serde.serialize(key),
                                                value_serde.serialize(value), ts)
                                               for key, value, ts in rows))
    return total


def _renamed_topology(spec: DemoSpec, rename: dict[str, str]) -> Any:
    import inspect

    params = inspect.signature(spec.build).parameters
    names = list(params)
    args = [rename[t] for t in [*spec.inputs, *spec.outputs]][:len(names)]
    return spec.build(*args)


def _run_until_quiet(app: App, kafka: KafkaCluster, spec: DemoSpec, rename: dict[str, str],
                     produced: int) -> dict[str, list[Record]]:
    error: list[BaseException] = []

    def target() -> None:
        try:
            app.run(install_signal_handlers=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        wait_until(lambda: error or app.stats.get("records_in", 0) >= produced, 120,
                   "the demo app to consume the sample records", interval=0.1)
        last: list[int] = [-1, 0]

        def quiet() -> bool:
            if error:
                return True
            seen = app.stats.get("records_in", 0) + app.stats.get("records_out", 0)
            if seen != last[0]:
                last[0], last[1] = seen, 0
                return False
            last[1] += 1
            return last[1] * 0.25 >= QUIET_S

        wait_until(quiet, 120, "the demo app to finish", interval=0.25)
    finally:
        app.stop()
        thread.join(60)
    if error:
        raise error[0]
    outputs = {}
    for topic, (key_serde, value_serde) in spec.outputs.items():
        kser, vser = resolve(key_serde), resolve(value_serde)
        outputs[topic] = [Record(kser.deserialize(r.key), vser.deserialize(r.value), r.timestamp,
                                 r.headers, topic, r.partition, r.offset)
                          for r in kafka.read_topic(rename[topic], timeout=60)]
    return outputs
