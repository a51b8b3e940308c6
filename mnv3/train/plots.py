"""PNG figures of a run: training curves (matplotlib, Agg backend; written atomically). Task figures live in mnv3.tasks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnv3.tasks.figures import pyplot, save


def plot_curves(records: Sequence[dict[str, Any]], out: str | Path, metric: str = "top1") -> Path | None:
    """Training loss and learning rate per step, the evaluation ``metric`` (the task's primary) per epoch; None
    when nothing is logged yet."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot([r["step"] for r in train], [r["lr"] for r in train], lw=1)
    axes[1].set(title="learning rate", xlabel="step")
    evals = [r for r in evals if metric in r]
    if evals:
        axes[2].plot([r["epoch"] for r in evals], [100 * r[metric] for r in evals], "o-")
    axes[2].set(title=f"evaluation {metric} (%)", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out)
