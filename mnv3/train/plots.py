"""PNG figures of a run: training curves and the confusion matrix (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: Sequence[dict[str, Any]], out: str | Path) -> Path | None:
    """Training loss and learning rate per step, evaluation top-1 per epoch; None when nothing is logged yet."""
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], lw=1)
    axes[0].set(title="training loss", xlabel="step", yscale="log")
    axes[1].plot([r["step"] for r in train], [r["lr"] for r in train], lw=1)
    axes[1].set(title="learning rate", xlabel="step")
    if evals:
        axes[2].plot([r["epoch"] for r in evals], [100 * r["top1"] for r in evals], "o-")
    axes[2].set(title="evaluation top-1 (%)", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_confusion(cm: torch.Tensor, classes: Sequence[str], out: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix with counts in each cell."""
    plt = _pyplot()
    n = len(classes)
    norm = cm.double() / cm.sum(dim=1, keepdim=True).clamp(min=1).double()
    size = max(6.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                c = int(cm[i, j])
                if c:
                    ax.text(j, i, str(c), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
