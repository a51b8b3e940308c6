"""The figures tasks (and the engine's curves) draw: matplotlib on the Agg backend, PNGs written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnv3.utils.atomic import atomic_save_figure


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: str | Path) -> Path:
    """Write ``fig`` whole or not at all, then close it."""
    try:
        return atomic_save_figure(fig, out)
    finally:
        pyplot().close(fig)


def per_class_bars(names: Sequence[str], percents: Sequence[float], ylabel: str, title: str, out: str | Path) -> Path:
    """One bar per class (per-class AP of a detector, IoU of a segmenter), in percent."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(names) + 2), 4))
    ax.bar(range(len(names)), list(percents))
    ax.set_xticks(range(len(names)), list(names), rotation=60, ha="right")
    ax.set(ylabel=ylabel, title=title)
    fig.tight_layout()
    return save(fig, out)
