"""Semantic segmentation as a task (paper §6.4, LR-ASPP): per-pixel cross-entropy with an ignore label, and
mIoU, per-class IoU and pixel accuracy from one confusion matrix summed over batches and processes.

The paper reports Cityscapes val mIoU (Tables 7-8); its ignore label is 255, as torchvision's segmentation
references (references/segmentation/train.py) and the Cityscapes train-id mapping use. A network's output is
the logits tensor (N, C, H, W) at the input size, or a mapping with it under ``out`` (torchvision's convention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mnv3.tasks.base import Evaluation, Meter, Task
from mnv3.tasks.figures import per_class_bars

IGNORE_INDEX = 255


def segmentation_logits(outputs: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A segmenter's logits (N, C, H, W): the output itself, or its ``out`` (torchvision's convention)."""
    return outputs["out"] if isinstance(outputs, Mapping) else outputs


def pixel_confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(true, predicted) pixel counts as an int64 (C, C) matrix; ignored pixels are left out."""
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(
            f"a mask holds label {int(t.max())} outside 0..{num_classes - 1} (and not the ignore label {ignore_index})"
        )
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass
class SegmentationEvalResult(Evaluation):
    """mIoU, per-class IoU and pixel accuracy of one pass, with the confusion matrix they come from."""

    confusion: torch.Tensor
    classes: list[str]
    count: int  # images

    @property
    def iou(self) -> list[float]:
        """IoU of each class: TP / (TP + FP + FN); NaN for a class absent from both masks and predictions."""
        cm = self.confusion.double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return [float(a / b) if b > 0 else math.nan for a, b in zip(tp, union, strict=True)]

    @property
    def miou(self) -> float:
        """The mean IoU over the classes that occur (Cityscapes' and torchvision's convention)."""
        vals = [v for v in self.iou if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else 0.0

    @property
    def pixel_accuracy(self) -> float:
        """Correct pixels over labelled pixels."""
        total = int(self.confusion.sum())
        return float(self.confusion.diag().sum()) / total if total else 0.0

    @property
    def primary(self) -> float:
        """mIoU picks the best checkpoint."""
        return self.miou

    def scalars(self) -> dict[str, float]:
        """mIoU and pixel accuracy."""
        return {"mIoU": self.miou, "pixel_acc": self.pixel_accuracy}

    def headline(self) -> dict[str, float]:
        """``mIoU`` and ``pixel accuracy``."""
        return {"mIoU": self.miou, "pixel accuracy": self.pixel_accuracy}

    def to_dict(self) -> dict[str, Any]:
        """mIoU, pixel accuracy, IoU by class name, the image count and the confusion matrix."""
        return {
            "mIoU": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "per_class_iou": dict(zip(self.classes, self.iou, strict=True)),
            "count": self.count,
            "confusion": self.confusion.tolist(),
        }


class SegmentationMeter(Meter):
    """Sums a pixel confusion matrix (and the image count) over batches; processes add theirs up."""

    def __init__(self, classes: Sequence[str], ignore_index: int = IGNORE_INDEX) -> None:
        self.classes = list(classes)
        self.ignore_index = ignore_index
        self.cm = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        self.images = torch.zeros(1, dtype=torch.int64)

    def update(self, outputs: torch.Tensor | Mapping[str, torch.Tensor], targets: torch.Tensor) -> None:
        """Add logits (N, C, H, W) and masks (N, H, W) of class ids (``ignore_index`` for unlabelled pixels)."""
        pred = segmentation_logits(outputs).argmax(1)
        if pred.shape != targets.shape:
            raise ValueError(f"predictions {tuple(pred.shape)} and masks {tuple(targets.shape)} differ in size")
        self.cm += pixel_confusion(pred.cpu(), targets.cpu(), len(self.classes), self.ignore_index)
        self.images += targets.shape[0]

    def totals(self) -> list[torch.Tensor]:
        """The confusion matrix and the image count."""
        return [self.cm, self.images]

    def result(self) -> SegmentationEvalResult:
        """The metrics of everything added."""
        return SegmentationEvalResult(self.cm.clone(), self.classes, int(self.images))


class SegmentationTask(Task):
    """Semantic segmentation over ``classes`` (class 0 is usually the background; 255 is ignored)."""

    name: ClassVar[str] = "segmentation"
    primary_metric: ClassVar[str] = "mIoU"

    def __init__(self, classes: Sequence[str], ignore_index: int = IGNORE_INDEX, label_smoothing: float = 0.0) -> None:
        if len(classes) < 2:
            raise ValueError("a segmentation task needs at least two classes (e.g. background and one object)")
        self.classes = list(classes)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg: Any, classes: Sequence[str]) -> SegmentationTask:
        """From a training configuration's ``label_smoothing``; its model must be a segmenter (a segmentation head spec)."""
        from mnv3.models.registry import is_spec_file, resolve_spec

        if (
            resolve_spec(cfg.model) if is_spec_file(cfg.model) else resolve_spec(cfg.model, preset=cfg.preset or "paper")
        ).segmentation is None:
            raise ValueError(f"{cfg.model} is not a segmenter; pick one of the lraspp_* / raspp_* models (mnv3 models)")
        return cls(classes, label_smoothing=cfg.label_smoothing)

    def loss(self, outputs: torch.Tensor | Mapping[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Per-pixel cross-entropy, averaged over labelled pixels."""
        return F.cross_entropy(
            segmentation_logits(outputs).float(),
            targets.long(),
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def meter(self) -> SegmentationMeter:
        """A pixel-confusion accumulator."""
        return SegmentationMeter(self.classes, self.ignore_index)

    def summary(self, ev: Evaluation) -> str:
        """``mIoU 72.4 %, pixel accuracy 95.1 %``."""
        assert isinstance(ev, SegmentationEvalResult)
        return f"mIoU {100 * ev.miou:.2f} %, pixel accuracy {100 * ev.pixel_accuracy:.2f} %"

    def write_reports(self, ev: Evaluation, out_dir: Path, title: str, suffix: str = "") -> list[Path]:
        """The per-class IoU as a bar chart, ``iou_per_class<suffix>.png``."""
        assert isinstance(ev, SegmentationEvalResult)
        ious = [0.0 if math.isnan(v) else 100 * v for v in ev.iou]
        return [
            per_class_bars(
                self.classes, ious, "IoU (%)", f"{title}: {self.summary(ev)}", Path(out_dir) / f"iou_per_class{suffix}.png"
            )
        ]
