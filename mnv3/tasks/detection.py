"""Object detection as a task (paper §6.3, SSDLite): anchor matching, box coding, the two losses of the
reference implementations, and COCO mAP through pycocotools.

* ``sigmoid_focal`` (TF Object Detection API, ``ssdlite_mobilenet_v3_*_320x320_coco.config``): weighted sigmoid
  focal loss (alpha 0.75, gamma 2) over every anchor and class column, smooth L1 on matched anchors, both
  normalised by the number of matches.
* ``softmax_hard_negatives`` (torchvision ``SSD.compute_loss``, torchvision/models/detection/ssd.py): softmax
  cross-entropy over the positives and the 3x as many hardest negatives, smooth L1 on the positives.

Both match with an argmax matcher (IoU >= 0.5) that also gives every ground-truth box its best anchor, and
encode boxes as (dx, dy, dw, dh) scaled by (10, 10, 5, 5) (:mod:`mnv3.models.boxes`); the settings are the
detector's head spec (:class:`mnv3.spec.detection.SSDLiteSpec`: ``loss``, ``matcher``, ``box_coder``). Class index 0 is the background; a dataset's
categories are 1..K. A network's raw outputs are a mapping with ``bbox_regression`` (N, A, 4),
``cls_logits`` (N, A, K + 1) and ``anchors`` (A, 4, xyxy pixels); in eval mode the task scores what the
network's ``postprocess`` gives (per image ``boxes``, ``scores``, ``labels``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, sigmoid_focal_loss

from mnv3.models.boxes import encode_boxes
from mnv3.spec.detection import BoxCoderSpec, ClassificationLoss, LossSpec, MatcherSpec, SSDLiteSpec
from mnv3.tasks.base import Evaluation, Meter, Task
from mnv3.tasks.figures import per_class_bars

__all__ = ["CocoMeter", "DetectionTask", "match_anchors"]

# pycocotools' COCOeval.stats, in its order (cocoeval.py, summarize())
COCO_STATS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")  # fmt: skip


def match_anchors(boxes: torch.Tensor, anchors: torch.Tensor, iou_threshold: float = 0.5, force: bool = True) -> torch.Tensor:
    """For each anchor, the index of its ground-truth box or -1 (background): argmax IoU >= threshold, and each
    box's best anchor matched to it whatever its IoU (TF's force_match_for_each_row; torchvision's SSDMatcher)."""
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    if boxes.numel() == 0:
        return matched
    iou = box_iou(boxes, anchors)  # (G, A)
    best, best_box = iou.max(dim=0)
    matched = torch.where(best >= iou_threshold, best_box, matched)
    if force:
        matched[iou.argmax(dim=1)] = torch.arange(boxes.shape[0], device=anchors.device)
    return matched


@dataclass
class DetectionEvalResult(Evaluation):
    """COCO box metrics of one pass: the 12 standard numbers and the AP of each class."""

    stats: dict[str, float]
    per_class_ap: dict[str, float]
    count: int
    detections: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> float:
        """mAP@[.5:.95] picks the best checkpoint."""
        return self.stats["mAP"]

    def scalars(self) -> dict[str, float]:
        """mAP, mAP@.5, mAP@.75 and AR@100."""
        return {k: self.stats[k] for k in ("mAP", "mAP50", "mAP75", "AR100")}

    def headline(self) -> dict[str, float]:
        """The COCO names: ``mAP@[.5:.95]`` and ``mAP@.5``."""
        return {"mAP@[.5:.95]": self.stats["mAP"], "mAP@.5": self.stats["mAP50"]}

    def to_dict(self) -> dict[str, Any]:
        """All 12 COCO numbers, the per-class AP, the image and detection counts."""
        return {"coco": dict(self.stats), "per_class_ap": dict(self.per_class_ap), "count": self.count, "detections": self.detections}


class CocoMeter(Meter):
    """Keeps every image's detections and ground truth; pycocotools' COCOeval scores them at the end.

    Boxes are compared in the coordinates the network saw (the evaluation transform's output size); COCO's
    small / medium / large ranges then refer to those pixels.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = list(classes)
        self.images: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def update(self, outputs: Sequence[Mapping[str, torch.Tensor]], targets: Sequence[Mapping[str, torch.Tensor]]) -> None:
        """Add per-image detections (``boxes``, ``scores``, ``labels``) and targets (``boxes``, ``labels``)."""
        for det, tgt in zip(outputs, targets, strict=True):
            d = {k: det[k].detach().float().cpu() if k != "labels" else det[k].cpu() for k in ("boxes", "scores", "labels")}
            t = {k: tgt[k].detach().cpu() for k in ("boxes", "labels")}
            if "iscrowd" in tgt:
                t["iscrowd"] = tgt["iscrowd"].cpu()
            self.images.append((d, t))

    def reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor], all_gather: Callable[[Any], list[Any]]) -> None:
        """Gather every process's images (each evaluated a disjoint shard)."""
        shards = all_gather(self.images)
        self.images = [im for shard in shards for im in shard]

    def result(self) -> DetectionEvalResult:
        """COCOeval (bbox) over everything added."""
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        gt: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.classes)]}
        dets: list[dict[str, Any]] = []
        for image_id, (d, t) in enumerate(self.images, start=1):
            gt["images"].append({"id": image_id})
            crowd = t.get("iscrowd", torch.zeros(len(t["labels"]), dtype=torch.int64))
            xywh = box_convert(t["boxes"].float(), "xyxy", "xywh")  # in float32, as the boxes came
            for box, label, c in zip(xywh.tolist(), t["labels"].tolist(), crowd.tolist(), strict=True):
                ann = {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": int(label),
                       "bbox": box, "area": box[2] * box[3], "iscrowd": int(c)}  # fmt: skip
                gt["annotations"].append(ann)
            xywh = box_convert(d["boxes"], "xyxy", "xywh")
            for box, score, label in zip(xywh.tolist(), d["scores"].tolist(), d["labels"].tolist(), strict=True):
                dets.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": score})
        empty = DetectionEvalResult(dict.fromkeys(COCO_STATS, 0.0), dict.fromkeys(self.classes, 0.0), len(self.images), 0)
        if not dets or not gt["annotations"]:
            return empty
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
            coco = COCO()
            coco.dataset = gt
            coco.createIndex()
            ev = COCOeval(coco, coco.loadRes(dets), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = {k: max(float(v), 0.0) for k, v in zip(COCO_STATS, ev.stats, strict=True)}  # -1: no box of that size
        precision = ev.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas, 100 detections
        per_class = {}
        for k, name in enumerate(self.classes):
            p = precision[:, :, k]
            p = p[p > -1]
            per_class[name] = float(p.mean()) if p.size else 0.0
        return DetectionEvalResult(stats, per_class, len(self.images), len(dets))


class DetectionTask(Task):
    """Detection over ``classes`` (background excluded; it is class 0 of the network's outputs)."""

    name: ClassVar[str] = "detection"
    primary_metric: ClassVar[str] = "mAP"

    def __init__(
        self, classes: Sequence[str], loss: LossSpec | None = None, matcher: MatcherSpec | None = None, box_coder: BoxCoderSpec | None = None
    ) -> None:
        if not classes:
            raise ValueError("a detection task needs at least one class")
        self.classes = list(classes)
        self.loss_spec, self.matcher, self.box_coder = loss or LossSpec(), matcher or MatcherSpec(), box_coder or BoxCoderSpec()
        if self.loss_spec.classification is ClassificationLoss.SOFTMAX_HARD_NEGATIVES and not self.loss_spec.negative_ratio:
            raise ValueError("the softmax hard-negative loss needs negative_ratio (torchvision SSD: 3)")

    @property
    def num_outputs(self) -> int:
        """The dataset's categories plus the background (class 0), as SSD predicts them."""
        return len(self.classes) + 1

    @classmethod
    def from_head(cls, classes: Sequence[str], head: SSDLiteSpec) -> DetectionTask:
        """The loss, matcher and box coder a detector's head spec records (its preset's, §6.3)."""
        return cls(classes, head.loss, head.matcher, head.box_coder)

    @classmethod
    def from_config(cls, cfg: Any, classes: Sequence[str]) -> DetectionTask:
        """From a training configuration: the settings of the configured detector's head spec."""
        from mnv3.models.registry import is_spec_file, resolve_spec

        spec = (resolve_spec(cfg.model) if is_spec_file(cfg.model) else resolve_spec(cfg.model, preset=cfg.preset or "paper"))
        if spec.detection is None:
            raise ValueError(f"{cfg.model} is not a detector; pick one of the ssdlite_* models (mnv3 models)")
        return cls.from_head(classes, spec.detection)

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """Localization + classification loss of a batch, normalised by the number of matched anchors."""
        s, weights = self.loss_spec, self.box_coder.weights
        reg, logits, anchors = outputs["bbox_regression"].float(), outputs["cls_logits"].float(), outputs["anchors"]
        cls_targets, loc_losses, n_pos = [], [], 0
        for i, t in enumerate(targets):
            matched = match_anchors(t["boxes"], anchors, self.matcher.iou_threshold, self.matcher.force_match_for_each_box)
            pos = torch.nonzero(matched >= 0).flatten()
            n_pos += len(pos)
            target_reg = encode_boxes(t["boxes"][matched[pos]], anchors[pos], weights)
            loc_losses.append(F.smooth_l1_loss(reg[i, pos], target_reg, beta=s.smooth_l1_delta, reduction="sum"))
            labels = torch.zeros(anchors.shape[0], dtype=torch.int64, device=anchors.device)
            labels[pos] = t["labels"][matched[pos]].long()
            cls_targets.append(labels)
        labels = torch.stack(cls_targets)
        norm = max(n_pos, 1)
        loc = torch.stack(loc_losses).sum() / norm
        if s.classification is ClassificationLoss.SIGMOID_FOCAL:
            one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
            alpha, gamma = s.focal_alpha if s.focal_alpha is not None else -1, s.focal_gamma or 0.0
            cls = sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum") / norm
        else:
            ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
            fg = labels > 0
            neg = ce.clone()
            neg[fg] = -math.inf
            order = neg.sort(dim=1, descending=True).indices.sort(dim=1).indices  # each anchor's rank among negatives
            hard = order < s.negative_ratio * fg.sum(1, keepdim=True)  # type: ignore[operator]
            cls = (ce[fg].sum() + ce[hard].sum()) / norm
        return s.localization_weight * loc + s.classification_weight * cls

    def meter(self) -> CocoMeter:
        """A COCO-mAP accumulator."""
        return CocoMeter(self.classes)

    def predict(self, model: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The network's decoded, NMS-filtered detections per image (its ``postprocess``)."""
        raw = model(images)
        post = getattr(model, "postprocess", None) or getattr(getattr(model, "module", None), "postprocess", None)
        if post is None:
            raise ValueError(f"{type(model).__name__} has no postprocess(raw, image_sizes): it is not an mnv3 detector")
        return post(raw, [tuple(images.shape[-2:])] * images.shape[0])

    def targets_to(self, targets: Any, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """A batch's list of target dicts, each tensor on ``device``."""
        return [{k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]

    def summary(self, ev: Evaluation) -> str:
        """``mAP 22.0, mAP@.5 40.1`` (COCO numbers in percent)."""
        assert isinstance(ev, DetectionEvalResult)
        return f"mAP {100 * ev.stats['mAP']:.1f}, mAP@.5 {100 * ev.stats['mAP50']:.1f}, AR@100 {100 * ev.stats['AR100']:.1f}"

    def write_reports(self, ev: Evaluation, out_dir: Path, title: str, suffix: str = "") -> list[Path]:
        """The per-class AP as a bar chart, ``ap_per_class<suffix>.png``."""
        assert isinstance(ev, DetectionEvalResult)
        aps = [100 * ev.per_class_ap[c] for c in self.classes]
        return [per_class_bars(self.classes, aps, "AP@[.5:.95] (%)", f"{title}: {self.summary(ev)}", Path(out_dir) / f"ap_per_class{suffix}.png")]

