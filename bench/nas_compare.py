"""The NAS strategies at equal samples (docs/benchmarks.md, "Search"): best reward and mean reward of the last quarter.

Reads ``<root>/<strategy>-<seed>/samples.jsonl`` of searches run with the same space, table, proxy and budget
(``mnv3 search nas --strategy S --seed K``) and prints one row per search and the mean over seeds per strategy.

    python bench/nas_compare.py runs/nas
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def summary(path: Path) -> dict[str, float]:
    """Best reward (and its accuracy / predicted latency) and the mean reward of the last quarter of one search's samples."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    best = max(rows, key=lambda r: r["reward"])
    tail = rows[-max(1, len(rows) // 4) :]
    return {
        "samples": len(rows),
        "best_reward": best["reward"],
        "best_accuracy": best["accuracy"],
        "best_latency_ms": best["latency_ms"],
        "last_quarter_mean": statistics.fmean(r["reward"] for r in tail),
        "distinct": len({r["name"] for r in rows}),
        "best_name": best["name"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    a = p.parse_args()
    by: dict[str, list[dict[str, float]]] = {}
    print("| strategy | seed | samples (distinct) | best reward | its held-out acc | its predicted ms | last-quarter mean reward |")
    print("|---|---|---|---|---|---|---|")
    for f in sorted(a.root.glob("*-*/samples.jsonl")):
        strategy, seed = f.parent.name.rsplit("-", 1)
        s = summary(f)
        by.setdefault(strategy, []).append(s)
        print(f"| {strategy} | {seed} | {s['samples']} ({s['distinct']}) | {s['best_reward']:.4f} | {100 * s['best_accuracy']:.1f} % | "
              f"{s['best_latency_ms']:.3f} | {s['last_quarter_mean']:.4f} |")
    print()
    print("| strategy | seeds | best reward, mean (min-max) | last-quarter mean reward, mean (min-max) |")
    print("|---|---|---|---|")
    for strategy, ss in by.items():
        b = [s["best_reward"] for s in ss]
        q = [s["last_quarter_mean"] for s in ss]
        print(f"| {strategy} | {len(ss)} | {statistics.fmean(b):.4f} ({min(b):.4f}-{max(b):.4f}) | {statistics.fmean(q):.4f} ({min(q):.4f}-{max(q):.4f}) |")


if __name__ == "__main__":
    main()
