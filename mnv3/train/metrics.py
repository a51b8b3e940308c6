"""Classification metrics and the run's metric log (JSON lines, plus TensorBoard when installed)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def topk_correct(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have the target among their top-k logits, for each k (capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(target.view(-1, 1))
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (true class, predicted class) as an int64 (C, C) matrix."""
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(cm: torch.Tensor) -> list[float]:
    """Recall of each class (diagonal over row sums); NaN for a class with no samples."""
    rows = cm.sum(dim=1).double()
    diag = cm.diag().double()
    return [float(d / r) if r > 0 else math.nan for d, r in zip(diag, rows, strict=True)]


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    Only the main process should hold an enabled logger.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install 'mnv3[train]'); logging to metrics.jsonl only", stacklevel=2)

    def log(self, kind: str, step: int, **values: Any) -> None:
        """Append one record (``kind`` is "train" or "eval") and mirror its numbers to TensorBoard."""
        if not self.enabled:
            return
        rec = {"kind": kind, "step": step, **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch",):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a torn last line from a killed writer is ignored)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | Path, after_step: int) -> None:
    """Drop records past ``after_step`` (a resumed run repeats them); the file is rewritten atomically."""
    from mnv3.utils.atomic import atomic_write_bytes

    p = Path(path)
    if not p.is_file():
        return
    keep = [r for r in read_metrics(p) if r.get("step", 0) <= after_step]
    atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in keep).encode())
