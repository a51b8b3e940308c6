"""Evaluation of a classifier: top-1 / top-5, loss, per-class accuracy and the confusion matrix.

Under torchrun each process evaluates a disjoint shard (no padding) and the counts are summed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mnv3.train.distributed import all_reduce_
from mnv3.train.metrics import confusion_matrix, per_class_accuracy, topk_correct


@dataclass
class EvalResult:
    """Totals of one pass over a dataset."""

    top1: float
    top5: float
    loss: float
    count: int
    confusion: torch.Tensor
    classes: list[str] = field(default_factory=list)

    @property
    def per_class(self) -> list[float]:
        """Accuracy of each class (recall), from the confusion matrix."""
        return per_class_accuracy(self.confusion)

    def to_dict(self) -> dict:
        """JSON-ready metrics: top-1, top-5, loss, count, per-class accuracy by name, confusion matrix."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "count": self.count,
            "per_class": dict(zip(self.classes or [str(i) for i in range(len(self.per_class))], self.per_class, strict=True)),
            "confusion": self.confusion.tolist(),
        }


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (fp32: none; fp16 only on CUDA)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    num_classes: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    classes: list[str] | None = None,
) -> EvalResult:
    """One pass in eval mode; returns the metrics summed over all processes."""
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    sums = torch.zeros(4, dtype=torch.float64)  # top1, top5, loss, count
    try:
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with autocast(device, precision):
                logits = model(x)
            logits = logits.float()
            t1, t5 = topk_correct(logits, y, (1, 5))
            sums += torch.tensor([t1, t5, float(F.cross_entropy(logits, y, reduction="sum")), len(y)], dtype=torch.float64)
            cm += confusion_matrix(logits.argmax(1).cpu(), y.cpu(), num_classes)
    finally:
        model.train(was_training)
    all_reduce_(sums)
    all_reduce_(cm)
    n = max(int(sums[3]), 1)
    return EvalResult(float(sums[0]) / n, float(sums[1]) / n, float(sums[2]) / n, int(sums[3]), cm, list(classes or []))
