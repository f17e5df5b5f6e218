"""Peers: the stateless and stateful benchmark pipelines in kstream, Quix Streams and Kafka Streams.

One command (from the repository root, with the project's virtual environment):

    .venv/bin/python bench/peers/run.py                       # 100k records, a quick check
    .venv/bin/python bench/peers/run.py --records 500000 --repeat 3

It sets up what it needs on first use: bench/peers/.venv-quix (a virtual environment with
quixstreams, which pins its own confluent-kafka, and matplotlib for the chart) and
bench/peers/kafka-streams/target/kstream-peers-bench.jar (`mvn -q package`; Java 17 and Maven on
PATH). The broker is KSTREAM_BOOTSTRAP_SERVERS if set, else a LocalBroker for the run.

Pipelines, both exactly-once, 4 partitions, inputs produced once and read by every run:
- stateless: the ~80-byte JSON orders of bench/stateless.py -> filter amount >= 100 -> map to
  {"id", "user", "amount_cents"} -> JSON to an output topic, key passed through;
- stateful: the JSON records of bench/stateful.py (10k keys) -> running {"count", "sum"} per key
  in a changelogged store (RocksDB everywhere) -> every update to an output topic.

Sides, each run in its own process on a fresh output topic, consumer group / application id:
- raw: the hand-written confluent-kafka loops of bench/stateless.py (one transaction every
  100 ms) and bench/stateful.py, unchanged (bench/peers/side.py);
- kstream: the apps of those two files, default settings (bench/peers/side.py);
- quix: Quix Streams, processing_guarantee="exactly-once", commit_interval=0.1
  (bench/peers/quix_side.py);
- kafka-streams: Kafka Streams 4.1.1, exactly_once_v2, 1 stream thread, commit.interval.ms=100,
  no record cache (every update emitted), Jackson for JSON (bench/peers/kafka-streams/). The JVM
  first runs a warm-up instance on the first --warmup input records (own application id and
  output topic; by default the whole input), then a fresh timed instance on the whole input.
All use a 100 ms commit/transaction interval (kstream's and Kafka Streams' exactly-once default).

Measured per run: rec/s = input records / (first input record processed -> last expected output
record), so group join and final commit are excluded; CPU per record = the side's own process
CPU time (all threads: time.process_time / the JVM's process CPU time) over that same window,
divided by the input records. Also kept in the JSON: cpu_s, the same clock from just before the
side starts consuming to after it has closed (group join, final commit, close; not the JVM
warm-up, interpreter start or imports), and process_cpu_s, the whole child process (the parent's
RUSAGE_CHILDREN).
Ratios are against the raw loop of the same round and pipeline, "by CPU" = raw CPU / side CPU
(higher is better, as for rec/s). Every output is read back read_committed and verified exactly:
stateless, the expected number of records, each id once, every value and key correct; stateful,
one output per input record and the last {"count", "sum"} per key equal to the truth (raw and
kstream: also their changelogs).

Writes bench/peers/results.json and the chart bench/peers/peers.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

PEERS = Path(__file__).resolve().parent
BENCH = PEERS.parent
sys.path.insert(0, str(BENCH))

import stateful  # noqa: E402
import stateless  # noqa: E402
from _common import (  # noqa: E402
    bootstrap,
    count_topic,
    create_topics,
    machine_note,
    median,
    produce_keyed,
    produce_orders,
    read_latest,
    unique,
)

QUIX_VENV = PEERS / ".venv-quix"
QUIX_PYTHON = QUIX_VENV / "bin" / "python"
QUIX_REQUIREMENTS = ["quixstreams==3.28.1", "matplotlib"]
JAVA_DIR = PEERS / "kafka-streams"
JAR = JAVA_DIR / "target" / "kstream-peers-bench.jar"
FRAMEWORKS = ("raw", "kstream", "quix", "kafka-streams")
LABELS = {"raw": "raw confluent-kafka loop", "kstream": "kstream",
          "quix": "Quix Streams 3.28.1", "kafka-streams": "Kafka Streams 4.1.1 (Java)"}
PIPELINES = ("stateless", "stateful")
RUN_TIMEOUT_S = 1800


# -- setup -------------------------------------------------------------------------------------
def ensure_quix_venv() -> None:
    check = [str(QUIX_PYTHON), "-c", "import quixstreams, matplotlib"]
    if QUIX_PYTHON.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return
    print(f"setup: creating {QUIX_VENV} with {' '.join(QUIX_REQUIREMENTS)}", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run([str(QUIX_PYTHON), "-m", "pip", "install", "-q", *QUIX_REQUIREMENTS],
                   check=True)


def ensure_jar() -> None:
    sources = [JAVA_DIR / "pom.xml", *JAVA_DIR.glob("src/**/*.java")]
    if JAR.exists() and JAR.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    print("setup: mvn -q package in bench/peers/kafka-streams", flush=True)
    subprocess.run(["mvn", "-q", "package"], cwd=JAVA_DIR, check=True)


# -- one run -----------------------------------------------------------------------------------
def child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_side(framework: str, pipeline: str, servers: str, inp: str, n: int, partitions: int,
             expected_out: int, warmup: int, quix_commit_interval: float = 0.1
             ) -> dict[str, Any]:
    """Run one side in its own process; returns its JSON result with "out" and "process_cpu_s"."""
    out = None
    with tempfile.TemporaryDirectory(prefix="kstream-peers-") as tmp:
        if framework in ("raw", "kstream"):
            cmd = [sys.executable, str(PEERS / "side.py"), "--framework", framework]
        elif framework == "quix":
            out = unique("quix-out")
            create_topics(servers, [out], partitions)
            cmd = [str(QUIX_PYTHON), str(PEERS / "quix_side.py"), "--output", out,
                   "--group", unique("quix-group"), "--expected-out", str(expected_out),
                   "--commit-interval", str(quix_commit_interval)]
        else:
            out, warm_out = unique("kafka-streams-out"), unique("kafka-streams-warmup-out")
            create_topics(servers, [out, warm_out], partitions)
            cmd = ["java", "-cp", str(JAR), "kstream.bench.PeerBench", "--output", out,
                   "--warmup-output", warm_out, "--app-id", unique("kafka-streams-bench"),
                   "--expected-out", str(expected_out), "--warmup", str(warmup),
                   "--state-dir", tmp]
        cmd += ["--pipeline", pipeline, "--bootstrap", servers, "--input", inp,
                "--records", str(n)]
        if framework in ("raw", "kstream"):
            cmd += ["--partitions", str(partitions)]
        cpu0 = child_cpu()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              check=False)
        process_cpu = child_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"{framework} {pipeline} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}")
    res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if out is not None:
        res["out"] = out
    res.update(framework=framework, pipeline=pipeline, process_cpu_s=process_cpu)
    return res


# -- verification ------------------------------------------------------------------------------
def verify_stateless(servers: str, res: dict[str, Any], n: int) -> str:
    expected = stateless.passing(n)
    ids: set[int] = set()

    def check(key: bytes | None, value: bytes | None) -> None:
        stateless.check_output(key, value)
        ids.add(orjson.loads(value)["id"])  # type: ignore[arg-type]

    try:
        count = count_topic(servers, res["out"], expected, timeout=180, check=check)
    except AssertionError as exc:
        return f"WRONG VALUE: {exc}"
    res["output_count"] = count
    if count != expected or len(ids) != expected:
        return f"MISMATCH: {count} records, {len(ids)} distinct ids, expected {expected}"
    return "ok"


def verify_stateful(servers: str, res: dict[str, Any], n: int,
                    expected: dict[str, dict[str, int]]) -> str:
    count, latest = read_latest(servers, res["out"])
    res["output_count"] = count
    got = {k.decode(): orjson.loads(v) for k, v in latest.items()
           if k is not None and v is not None}
    if count != n:
        return f"MISMATCH: {count} output records, expected one per input ({n})"
    if got != expected:
        wrong = sum(1 for k, v in expected.items() if got.get(k) != v)
        return f"MISMATCH: {wrong} of {len(expected)} keys wrong or missing"
    if "changelog" in res:
        _, check = stateful.check_topic(servers, res["changelog"], expected)
        if check != "ok":
            return f"changelog {check}"
    return "ok"


# -- report ------------------------------------------------------------------------------------
def summarize(runs: list[dict[str, Any]], frameworks: list[str], pipelines: list[str]
              ) -> list[dict[str, Any]]:
    """Per pipeline and framework: median rec/s, CPU µs/record and ratios to the raw loop of the
    same round (median of the per-round ratios)."""
    rows = []
    for pipeline in pipelines:
        for fw in frameworks:
            mine = [r for r in runs if r["pipeline"] == pipeline and r["framework"] == fw]
            if not mine:
                continue
            rate_ratios, cpu_ratios = [], []
            for r in mine:
                raw = [x for x in runs if x["pipeline"] == pipeline and x["framework"] == "raw"
                       and x["round"] == r["round"]]
                if raw:
                    rate_ratios.append(r["rate"] / raw[0]["rate"])
                    cpu_ratios.append(raw[0]["cpu_us_per_record"] / r["cpu_us_per_record"])
            rows.append({
                "pipeline": pipeline, "framework": fw, "runs": len(mine),
                "rate": median([r["rate"] for r in mine]),
                "rates": [r["rate"] for r in mine],
                "cpu_us_per_record": median([r["cpu_us_per_record"] for r in mine]),
                "run_cpu_us_per_record": median([r["run_cpu_us_per_record"] for r in mine]),
                "process_cpu_s": median([r["process_cpu_s"] for r in mine]),
                "ratio_rate": median(rate_ratios), "ratio_cpu": median(cpu_ratios),
                "verified": all(r["check"] == "ok" for r in mine),
            })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| pipeline | side | rec/s (median) | runs | × raw by rec/s | CPU µs/record | "
             "× raw by CPU (raw CPU / its CPU) | CPU µs/record, whole run | output verified |",
             "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {LABELS[r['framework']]} | {r['rate']:,.0f} | "
            f"{' / '.join(f'{x:,.0f}' for x in r['rates'])} | {r['ratio_rate']:.2f}× | "
            f"{r['cpu_us_per_record']:.1f} | {r['ratio_cpu']:.2f}× | "
            f"{r['run_cpu_us_per_record']:.1f} | "
            f"{'ok' if r['verified'] else 'NO'} |")
    return "\n".join(lines)


def chart(results: Path, png: Path) -> None:
    subprocess.run([str(QUIX_PYTHON), str(PEERS / "plot.py"), str(results), str(png)],
                   check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="rounds (order rotates per round)")
    parser.add_argument("--warmup", type=int, default=-1,
                        help="input records for the JVM's warm-up instance (default: all of "
                             "them, at most 500k; with 15k instead of 100k the timed run of "
                             "100k records was 4x slower)")
    parser.add_argument("--quix-commit-interval", type=float, default=0.1,
                        help="Quix's commit_interval in seconds (default 0.1, as the others)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES))
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma list; raw is needed for the ratios")
    parser.add_argument("--json", default=str(PEERS / "results.json"))
    parser.add_argument("--chart", default=str(PEERS / "peers.png"))
    args = parser.parse_args()
    n = args.records
    warmup = args.warmup if args.warmup >= 0 else min(n, 500_000)
    frameworks = [f.strip() for f in args.frameworks.split(",")]
    pipelines = [p.strip() for p in args.pipelines.split(",")]
    if unknown := set(frameworks) - set(FRAMEWORKS) or set(pipelines) - set(PIPELINES):
        parser.error(f"unknown {sorted(unknown)}")

    ensure_quix_venv()
    if "kafka-streams" in frameworks:
        ensure_jar()
    started = time.time()
    with bootstrap() as servers:
        inputs: dict[str, str] = {}
        for pipeline in pipelines:
            inp = inputs[pipeline] = unique(f"peers-{pipeline}-in")
            create_topics(servers, [inp], args.partitions)
            took = (produce_orders(servers, inp, n) if pipeline == "stateless"
                    else produce_keyed(servers, inp, stateful.input_records(n, args.keys)))
            print(f"input {pipeline}: {n:,} records -> {inp} ({args.partitions} partitions) "
                  f"in {took:.1f}s", flush=True)
        truth = stateful.truth(n, args.keys) if "stateful" in pipelines else {}
        runs: list[dict[str, Any]] = []
        for rnd in range(args.repeat):
            order = frameworks[rnd % len(frameworks):] + frameworks[:rnd % len(frameworks)]
            for pipeline in pipelines:
                expected_out = stateless.passing(n) if pipeline == "stateless" else n
                for fw in order:
                    res = run_side(fw, pipeline, servers, inputs[pipeline], n, args.partitions,
                                   expected_out, warmup, args.quix_commit_interval)
                    res["check"] = (verify_stateless(servers, res, n) if pipeline == "stateless"
                                    else verify_stateful(servers, res, n, truth))
                    res["round"] = rnd
                    res["cpu_us_per_record"] = res["cpu_window_s"] / n * 1e6
                    res["run_cpu_us_per_record"] = res["cpu_s"] / n * 1e6
                    runs.append(res)
                    print(f"round {rnd + 1} {pipeline:9} {fw:13} {res['rate']:>9,.0f} rec/s  "
                          f"cpu {res['cpu_window_s']:6.2f} s ({res['cpu_us_per_record']:.1f} "
                          f"µs/rec; whole run {res['cpu_s']:.2f} s, process "
                          f"{res['process_cpu_s']:.2f} s)  startup "
                          f"{res['startup_s']:.1f} s  output {res['check']}", flush=True)
    rows = summarize(runs, frameworks, pipelines)
    quix_version = subprocess.run(
        [str(QUIX_PYTHON), "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True, text=True, check=False).stdout.strip()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
            "machine": machine_note(), "records": n, "keys": args.keys,
            "partitions": args.partitions, "repeat": args.repeat, "jvm_warmup_records": warmup,
            "quixstreams": quix_version, "kafka_streams": "4.1.1",
            "quix_commit_interval_s": args.quix_commit_interval,
            "load_average_at_end": os.getloadavg(), "wall_s": time.time() - started}
    results = Path(args.json)
    results.write_text(json.dumps({"meta": meta, "summary": rows, "runs": runs}, indent=1))
    print()
    print(f"{meta['date']} · {meta['machine']} · {n:,} records ({args.keys:,} keys for "
          f"stateful), {args.partitions} partitions, exactly-once, {args.repeat} round(s), "
          f"JVM warm-up {warmup:,} records")
    print(table(rows))
    chart(results, Path(args.chart))
    print(f"\nwrote {results} and {args.chart}")
    if not all(r["verified"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
