"""The detection task's matching, box coding, losses and COCO metrics against torchvision's SSD and
torchmetrics' MeanAveragePrecision (pycocotools backend) run side by side."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.models.detection import _utils as tv_det_utils
from torchvision.models.detection.ssd import SSD

from mnv3.models.boxes import decode_boxes, encode_boxes
from mnv3.spec.detection import ClassificationLoss, LossSpec
from mnv3.tasks import TASKS, DetectionTask
from mnv3.tasks.detection import COCO_STATS, match_anchors

pytest.importorskip("pycocotools")
WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def _boxes(n: int, g: torch.Generator, size: float = 320.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size * 0.7
    wh = torch.rand(n, 2, generator=g) * size * 0.3 + 4
    return torch.cat([xy, xy + wh], dim=1)


def test_box_coding_matches_torchvision_and_round_trips() -> None:
    g = torch.Generator().manual_seed(0)
    anchors, boxes = _boxes(50, g), _boxes(50, g)
    ref = tv_det_utils.BoxCoder(WEIGHTS)
    deltas = encode_boxes(boxes, anchors, WEIGHTS)
    torch.testing.assert_close(deltas, ref.encode_single(boxes, anchors))
    torch.testing.assert_close(decode_boxes(deltas, anchors, WEIGHTS), boxes, rtol=1e-5, atol=1e-3)
    clamp = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip
    torch.testing.assert_close(decode_boxes(deltas * 40, anchors, WEIGHTS, clamp), ref.decode_single(deltas * 40, anchors))


def test_matching_is_torchvisions_ssd_matcher() -> None:
    g = torch.Generator().manual_seed(1)
    anchors, boxes = _boxes(400, g), _boxes(7, g)
    from torchvision.ops import box_iou

    ref = tv_det_utils.SSDMatcher(0.5)(box_iou(boxes, anchors))
    assert torch.equal(match_anchors(boxes, anchors, 0.5), ref)
    assert (match_anchors(boxes[:0], anchors) == -1).all()
    assert set(match_anchors(boxes, anchors).tolist()) >= set(range(7))  # every box has an anchor


def _batch(g: torch.Generator, n_img: int = 3, a: int = 300, c: int = 6):
    anchors = _boxes(a, g)
    targets = [{"boxes": _boxes(k, g), "labels": torch.randint(1, c, (k,), generator=g)} for k in (3, 1, 5)[:n_img]]
    raw = {"bbox_regression": torch.randn(n_img, a, 4, generator=g), "cls_logits": torch.randn(n_img, a, c, generator=g), "anchors": anchors}
    return raw, targets


def test_hard_negative_loss_is_torchvisions_ssd_loss() -> None:
    g = torch.Generator().manual_seed(2)
    raw, targets = _batch(g)
    task = DetectionTask([f"c{i}" for i in range(5)], LossSpec(ClassificationLoss.SOFTMAX_HARD_NEGATIVES, None, None, 3))
    from torchvision.ops import box_iou

    fake = SimpleNamespace(box_coder=tv_det_utils.BoxCoder(WEIGHTS), neg_to_pos_ratio=3)
    matched = [tv_det_utils.SSDMatcher(0.5)(box_iou(t["boxes"], raw["anchors"])) for t in targets]
    ref = SSD.compute_loss(fake, targets, raw, [raw["anchors"]] * 3, matched)  # type: ignore[arg-type]
    torch.testing.assert_close(task.loss(raw, targets), ref["bbox_regression"] + ref["classification"])


def test_focal_loss_is_the_tf_weighted_sigmoid_focal_formula() -> None:
    g = torch.Generator().manual_seed(3)
    raw, targets = _batch(g)
    task = DetectionTask([f"c{i}" for i in range(5)], LossSpec(localization_weight=0.0))
    a, gamma = 0.75, 2.0
    anchors, total, n_pos = raw["anchors"], 0.0, 0
    for i, t in enumerate(targets):
        m = match_anchors(t["boxes"], anchors)
        y = torch.zeros(anchors.shape[0], 6)
        y[torch.arange(anchors.shape[0]), torch.where(m >= 0, t["labels"][m.clamp(min=0)], 0)] = 1.0
        p = torch.sigmoid(raw["cls_logits"][i])
        pt = torch.where(y > 0, p, 1 - p)
        w = torch.where(y > 0, torch.full_like(p, a), torch.full_like(p, 1 - a))
        total += float((-w * (1 - pt) ** gamma * torch.log(pt)).sum())
        n_pos += int((m >= 0).sum())
    assert float(task.loss(raw, targets)) == pytest.approx(total / n_pos, rel=1e-4)


def test_coco_meter_matches_torchmetrics_mean_average_precision() -> None:
    tm = pytest.importorskip("torchmetrics.detection")
    g = torch.Generator().manual_seed(4)
    classes = ["a", "b", "c"]
    preds, targets = [], []
    for _ in range(12):
        boxes = _boxes(4, g)
        labels = torch.randint(1, 4, (4,), generator=g)
        noisy = boxes + torch.randn(4, 4, generator=g) * 6
        noisy[:, 2:] = torch.maximum(noisy[:, 2:], noisy[:, :2] + 1)  # decoded boxes always have a positive size
        extra = _boxes(2, g)
        preds.append({"boxes": torch.cat([noisy, extra]), "scores": torch.rand(6, generator=g), "labels": torch.cat([labels, torch.randint(1, 4, (2,), generator=g)])})
        targets.append({"boxes": boxes, "labels": labels})
    meter = DetectionTask(classes).meter()
    meter.update(preds[:5], targets[:5])
    meter.update(preds[5:], targets[5:])
    meter.reduce(lambda t: t, lambda obj: [obj])
    ev = meter.result()
    # pycocotools' own thresholds (numpy float64; torchmetrics' defaults are float32 linspaces, which move a
    # recall that lands exactly on a threshold to the next one)
    iou_thrs = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True).tolist()
    rec_thrs = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True).tolist()
    ref = tm.MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", backend="pycocotools", class_metrics=True, iou_thresholds=iou_thrs, rec_thresholds=rec_thrs
    )
    ref.update(preds, targets)
    r = ref.compute()
    names = {"mAP": "map", "mAP50": "map_50", "mAP75": "map_75", "mAP_small": "map_small", "mAP_medium": "map_medium",
             "mAP_large": "map_large", "AR1": "mar_1", "AR10": "mar_10", "AR100": "mar_100"}  # fmt: skip
    for ours, theirs in names.items():
        assert ev.stats[ours] == pytest.approx(max(float(r[theirs]), 0.0), abs=1e-6), ours
    assert [ev.per_class_ap[c] for c in classes] == pytest.approx(r["map_per_class"].tolist(), abs=1e-6)
    assert set(ev.stats) == set(COCO_STATS) and 0 < ev.primary < 1 and ev.count == 12


def test_perfect_detections_score_one_and_none_score_zero() -> None:
    g = torch.Generator().manual_seed(5)
    boxes = [_boxes(3, g) for _ in range(4)]
    targets = [{"boxes": b, "labels": torch.tensor([1, 2, 1])} for b in boxes]
    meter = DetectionTask(["x", "y"]).meter()
    meter.update([{"boxes": b, "scores": torch.ones(3), "labels": torch.tensor([1, 2, 1])} for b in boxes], targets)
    assert meter.result().stats["mAP50"] == pytest.approx(1.0)
    empty = DetectionTask(["x", "y"]).meter()
    empty.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}] * 4, targets)
    assert empty.result().primary == 0.0


def test_detection_is_a_registered_task_with_checked_settings() -> None:
    assert TASKS["detection"] is DetectionTask
    with pytest.raises(ValueError, match="needs negative_ratio"):
        DetectionTask(["a"], LossSpec(ClassificationLoss.SOFTMAX_HARD_NEGATIVES, None, None, None))
    assert not math.isnan(float(DetectionTask(["a"]).loss(*_batch(torch.Generator().manual_seed(6), c=2))))
