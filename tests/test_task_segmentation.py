"""The segmentation task's loss and mIoU against torch and torchmetrics run side by side."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mnv3.tasks import TASKS, SegmentationTask

torchmetrics = pytest.importorskip("torchmetrics")


def _batch(seed: int = 0, n: int = 3, c: int = 5, h: int = 24, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    masks = torch.randint(0, c, (n, h, w), generator=g)
    masks[:, :2] = 255  # an ignored band, as at item borders
    masks[masks == 3] = 1  # class 3 never occurs in the masks
    return logits, masks


def test_miou_and_per_class_iou_match_torchmetrics_jaccard() -> None:
    logits, masks = _batch()
    c = logits.shape[1]
    task = SegmentationTask([f"c{i}" for i in range(c)])
    meter = task.meter()
    meter.update(logits[:2], masks[:2])
    meter.update({"out": logits[2:]}, masks[2:])  # torchvision's output convention too
    meter.reduce(lambda t: t, lambda obj: [obj])
    ev = meter.result()
    jac = torchmetrics.classification.MulticlassJaccardIndex(c, average=None, ignore_index=255)(logits.argmax(1), masks)
    assert ev.iou == pytest.approx(jac.tolist(), abs=1e-6)
    acc = torchmetrics.classification.MulticlassAccuracy(c, average="micro", ignore_index=255)(logits.argmax(1), masks)
    assert ev.pixel_accuracy == pytest.approx(float(acc), abs=1e-6)
    assert ev.miou == pytest.approx(sum(ev.iou) / c, abs=1e-9)  # class 3 is still predicted, so it counts (IoU 0)
    assert ev.count == 3 and ev.primary == ev.miou and set(ev.to_dict()["per_class_iou"]) == set(task.classes)


def test_a_class_absent_from_masks_and_predictions_is_left_out_of_the_mean() -> None:
    masks = torch.zeros(1, 4, 4, dtype=torch.int64)
    masks[0, :2] = 1
    logits = F.one_hot(masks, 3).permute(0, 3, 1, 2).float()  # perfect, class 2 nowhere
    ev = SegmentationTask(["bg", "a", "b"]).meter()
    ev.update(logits, masks)
    r = ev.result()
    assert math.isnan(r.iou[2]) and r.miou == 1.0 and r.pixel_accuracy == 1.0


def test_loss_is_cross_entropy_ignoring_255() -> None:
    logits, masks = _batch(1)
    task = SegmentationTask([f"c{i}" for i in range(5)])
    assert torch.allclose(task.loss(logits, masks), F.cross_entropy(logits, masks, ignore_index=255))
    assert torch.allclose(task.loss({"out": logits}, masks), task.loss(logits, masks))


def test_bad_masks_are_clear_errors() -> None:
    task = SegmentationTask(["bg", "a"])
    with pytest.raises(ValueError, match="label 7 outside 0..1"):
        task.meter().update(torch.zeros(1, 2, 2, 2), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="differ in size"):
        task.meter().update(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least two classes"):
        SegmentationTask(["only"])
    assert TASKS["segmentation"] is SegmentationTask
