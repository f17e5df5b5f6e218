"""Chart of bench/peers/results.json: records/s and CPU per record, per pipeline and framework.

    bench/peers/.venv-quix/bin/python bench/peers/plot.py bench/peers/results.json out.png

Runs in the Quix virtual environment (matplotlib lives there, not in the project's deps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import StrMethodFormatter  # noqa: E402

LABELS = {"raw": "raw confluent-kafka loop", "kstream": "kstream",
          "quix": "Quix Streams", "kafka-streams": "Kafka Streams (Java)"}
COLORS = {"raw": "#9e9e9e", "kstream": "#1f77b4", "quix": "#ff7f0e",
          "kafka-streams": "#2ca02c"}
TITLES = {"stateless": "stateless filter→map", "stateful": "count+sum per key"}


def main() -> None:
    data: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    rows: list[dict[str, Any]] = data["summary"]
    meta: dict[str, Any] = data["meta"]
    pipelines = list(dict.fromkeys(r["pipeline"] for r in rows))
    frameworks = list(dict.fromkeys(r["framework"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    width = 0.8 / len(frameworks)
    panels = (("rate", "ratio_rate", "records/s (higher is better)", "{:,.0f}"),
              ("cpu_us_per_record", "ratio_cpu", "CPU µs per record (lower is better)",
               "{:.1f}"))
    for ax, (field, ratio, title, fmt) in zip(axes, panels, strict=True):
        for i, fw in enumerate(frameworks):
            xs, ys, notes = [], [], []
            for j, pipeline in enumerate(pipelines):
                row = next((r for r in rows if r["pipeline"] == pipeline
                            and r["framework"] == fw), None)
                if row is None:
                    continue
                xs.append(j + (i - (len(frameworks) - 1) / 2) * width)
                ys.append(row[field])
                notes.append(f"{fmt.format(row[field])}\n{row[ratio]:.2f}×")
            bars = ax.bar(xs, ys, width, label=LABELS.get(fw, fw), color=COLORS.get(fw))
            ax.bar_label(bars, notes, fontsize=7, padding=2)
        ax.set_xticks(range(len(pipelines)), [TITLES.get(p, p) for p in pipelines])
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.2)
        ax.spines[["top", "right"]].set_visible(False)
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes[0].legend(fontsize=8, loc="upper right")
    rounds = "1 round" if meta["repeat"] == 1 else f"medians of {meta['repeat']} rounds"
    fig.suptitle(f"Exactly-once, {meta['records']:,} JSON records, {meta['partitions']} "
                 f"partitions, one local broker, {rounds} ({meta['date'][:10]})\nlabels: value "
                 f"and ratio to the raw loop of the same round (by CPU: raw CPU / its CPU)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
