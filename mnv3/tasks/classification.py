"""Image classification as a task: cross-entropy (with label smoothing and MixUp / CutMix targets), top-1 /
top-5, per-class accuracy, the confusion matrix and its figure.

The paper reports ImageNet top-1 (§6.1, Tables 3-4); top-5 and the confusion matrix are what users of
torchvision's and timm's references read alongside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mnv3.data.transforms import batch_mix
from mnv3.tasks.base import Evaluation, Meter, Task
from mnv3.tasks.figures import pyplot, save


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


@dataclass
class EvalResult(Evaluation):
    """Totals of one classification pass over a dataset."""

    top1: float
    top5: float
    loss: float
    count: int
    confusion: torch.Tensor
    classes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> float:
        """Top-1 accuracy picks the best checkpoint."""
        return self.top1

    @property
    def per_class(self) -> list[float]:
        """Accuracy of each class (recall), from the confusion matrix."""
        return per_class_accuracy(self.confusion)

    def scalars(self) -> dict[str, float]:
        """top1, top5 and the mean cross-entropy."""
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss}

    def headline(self) -> dict[str, float]:
        """``top-1`` and ``top-5``, as the paper's tables and the weights' metadata name them."""
        return {"top-1": self.top1, "top-5": self.top5}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics: top-1, top-5, loss, count, per-class accuracy by name, confusion matrix."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "count": self.count,
            "per_class": dict(zip(self.classes or [str(i) for i in range(len(self.per_class))], self.per_class, strict=True)),
            "confusion": self.confusion.tolist(),
        }


class ClassificationMeter(Meter):
    """Top-1 / top-5 hits, summed cross-entropy, image count and the confusion matrix."""

    def __init__(self, num_classes: int, classes: Sequence[str] = ()) -> None:
        self.num_classes = num_classes
        self.classes = list(classes)
        self.sums = torch.zeros(4, dtype=torch.float64)  # top1, top5, loss, count
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch of logits (N, C) and class indices (N,)."""
        outputs = outputs.float()
        t1, t5 = topk_correct(outputs, targets, (1, 5))
        loss = float(F.cross_entropy(outputs, targets, reduction="sum"))
        self.sums += torch.tensor([t1, t5, loss, len(targets)], dtype=torch.float64)
        self.cm += confusion_matrix(outputs.argmax(1).cpu(), targets.cpu(), self.num_classes)

    def totals(self) -> list[torch.Tensor]:
        """The sums and the confusion matrix."""
        return [self.sums, self.cm]

    def result(self) -> EvalResult:
        """Accuracies and mean loss over every image added."""
        n = max(int(self.sums[3]), 1)
        s = self.sums
        return EvalResult(float(s[0]) / n, float(s[1]) / n, float(s[2]) / n, int(s[3]), self.cm.clone(), self.classes)


class ClassificationTask(Task):
    """Classification over ``classes``: cross-entropy with optional label smoothing and MixUp / CutMix."""

    name: ClassVar[str] = "classification"
    primary_metric: ClassVar[str] = "top1"

    def __init__(self, classes: Sequence[str], label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0) -> None:
        if not classes:
            raise ValueError("a classification task needs at least one class")
        self.classes = list(classes)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.mixup, self.cutmix = mixup, cutmix

    @classmethod
    def from_config(cls, cfg: Any, classes: Sequence[str]) -> ClassificationTask:
        """From a training configuration's ``label_smoothing``, ``mixup`` and ``cutmix`` fields."""
        return cls(classes, cfg.label_smoothing, cfg.mixup, cfg.cutmix)

    @property
    def num_classes(self) -> int:
        """How many classes the network predicts."""
        return self.num_outputs

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against class indices or (MixUp / CutMix) class probabilities."""
        return self.criterion(outputs.float(), targets)

    def meter(self) -> ClassificationMeter:
        """A fresh top-k / confusion accumulator."""
        return ClassificationMeter(self.num_classes, self.classes)

    def batch_transform(self) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
        """MixUp / CutMix (torchvision.transforms.v2) when configured."""
        return batch_mix(self.mixup, self.cutmix, self.num_classes)

    def summary(self, ev: Evaluation) -> str:
        """``top-1 91.20 %, top-5 99.80 %``."""
        assert isinstance(ev, EvalResult)
        return f"top-1 {100 * ev.top1:.2f} %, top-5 {100 * ev.top5:.2f} %"

    def write_reports(self, ev: Evaluation, out_dir: Path, title: str, suffix: str = "") -> list[Path]:
        """The confusion matrix as ``confusion<suffix>.png``."""
        assert isinstance(ev, EvalResult)
        return [plot_confusion(ev.confusion, self.classes, Path(out_dir) / f"confusion{suffix}.png", f"{title}: {self.summary(ev)}")]


def plot_confusion(cm: torch.Tensor, classes: Sequence[str], out: str | Path, title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix with counts in each cell, written atomically."""
    plt = pyplot()
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
    return save(fig, out)
