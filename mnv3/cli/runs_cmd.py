"""``mnv3 runs``: the training runs under a folder, with their state, step, best metric and artifacts."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 runs``."""
    p = sub.add_parser(
        "runs",
        help="list training runs with their state (running, finished, stopped...), step, best metric and artifacts",
        description="Read each run folder's status.json (written by mnv3 train) and tell live runs from stopped ones "
        "by their lock. A stopped run continues with: mnv3 train --resume RUN.",
    )
    p.add_argument("parent", nargs="?", default="runs", help="folder holding run folders (mnv3 train --out-dir; default runs/)")
    p.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line (or JSON object) per run, newest first."""
    from pathlib import Path

    from mnv3.train.run_state import list_runs

    runs = list_runs(Path(args.parent))
    if args.json:
        for r in runs:
            st = r.status
            rec = {"run": str(r.path), "state": r.state}
            if st is not None:
                rec.update(json.loads(st.to_json()))
            print(json.dumps(rec))
        return 0
    if not runs:
        print(f"no runs under {args.parent}")
        return 0
    rows = [("run", "state", "step", "best", "artifacts")]
    for r in runs:
        st = r.status
        step = f"{st.step}/{st.total_steps}" if st else "?"
        best = f"{st.best['metric']} {100 * st.best['value']:.2f} %" if st and st.best else "-"
        arts = ", ".join(st.artifacts) if st and st.artifacts else "-"
        rows.append((r.path.name, r.state, step, best, arts))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0
