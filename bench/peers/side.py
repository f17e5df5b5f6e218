"""The raw confluent-kafka loop and kstream sides of bench/peers, one run per process.

Started by bench/peers/run.py with the project's interpreter; prints one JSON line. Reuses the
loops and apps of bench/stateless.py (exactly-once, raw loop: one transaction every 100 ms) and
bench/stateful.py (exactly-once, RocksDB, every update emitted), unchanged. cpu_s is this
process's CPU time (all threads, getrusage) over the run call: output topic creation, group
join, processing, final commit and close; not the interpreter start or the imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stateful  # noqa: E402
import stateless  # noqa: E402


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(framework: str, pipeline: str, servers: str, inp: str, n: int,
        partitions: int) -> dict[str, Any]:
    if pipeline == "stateless":
        if framework == "raw":
            return stateless.run_raw(servers, inp, n, partitions, stateless.EOS, 0.1)
        return stateless.run_kstream(servers, inp, n, partitions, stateless.EOS)
    if framework == "raw":
        return stateful.run_raw(servers, inp, n, partitions)
    return stateful.run_kstream(servers, inp, n, partitions, "rocksdb", False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--framework", choices=("raw", "kstream"), required=True)
    parser.add_argument("--pipeline", choices=("stateless", "stateful"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    cpu0 = cpu_seconds()
    res = run(args.framework, args.pipeline, args.bootstrap, args.input, args.records,
              args.partitions)
    res["cpu_s"] = cpu_seconds() - cpu0
    print(json.dumps(res))


if __name__ == "__main__":
    main()
