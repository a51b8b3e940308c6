"""The task interface: classification's loss and metrics checked against torch and torchmetrics run side by side."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mnv3.tasks import TASKS, ClassificationTask, task_class
from mnv3.train.config import load_recipe
from mnv3.train.evaluate import evaluate

torchmetrics = pytest.importorskip("torchmetrics")


def _batch(n: int = 300, c: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)


def test_classification_meter_matches_torchmetrics() -> None:
    logits, target = _batch()
    c = logits.shape[1]
    task = ClassificationTask([f"c{i}" for i in range(c)])
    meter = task.meter()
    for i in range(0, len(target), 64):  # in batches, as an evaluation pass adds them
        meter.update(logits[i : i + 64], target[i : i + 64])
    ev = meter.result()
    tm = torchmetrics.classification
    assert ev.top1 == pytest.approx(float(tm.MulticlassAccuracy(c, top_k=1, average="micro")(logits, target)), abs=1e-6)
    assert ev.top5 == pytest.approx(float(tm.MulticlassAccuracy(c, top_k=5, average="micro")(logits, target)), abs=1e-6)
    assert torch.equal(ev.confusion, tm.MulticlassConfusionMatrix(c)(logits, target))
    recall = tm.MulticlassRecall(c, average=None)(logits, target)
    assert ev.per_class == pytest.approx(recall.tolist(), abs=1e-6)
    assert ev.loss == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-6)
    assert ev.count == len(target) and ev.primary == ev.top1
    assert set(ev.to_dict()["per_class"]) == set(task.classes)


def test_evaluate_runs_a_task_meter_over_a_loader() -> None:
    x = torch.randn(50, 6)
    y = torch.randint(0, 4, (50,))
    model = torch.nn.Linear(6, 4)
    task = ClassificationTask(list("abcd"))
    ev = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=7), task, torch.device("cpu"))
    whole = task.meter()
    with torch.no_grad():
        whole.update(model(x), y)
    a, b = ev.to_dict(), whole.result().to_dict()
    assert a.pop("loss") == pytest.approx(b.pop("loss"), rel=1e-6)  # summed per batch vs at once
    assert a == b


def test_classification_loss_is_torch_cross_entropy_with_smoothing_and_soft_targets() -> None:
    logits, target = _batch(40, 5)
    task = ClassificationTask(list("abcde"), label_smoothing=0.1)
    assert torch.allclose(task.loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1))
    soft = F.one_hot(target, 5).float() * 0.7 + 0.3 / 5
    assert torch.allclose(task.loss(logits, soft), F.cross_entropy(logits, soft, label_smoothing=0.1))
    assert task.batch_transform() is None
    mixed = ClassificationTask(list("abcde"), mixup=0.2).batch_transform()
    images = torch.rand(8, 1, 8, 8)
    xm, ym = mixed(images, target[:8])  # type: ignore[misc]
    assert xm.shape == images.shape and ym.shape == (8, 5) and torch.allclose(ym.sum(1), torch.ones(8))


def test_tasks_are_registered_and_unknown_ones_name_the_known() -> None:
    assert task_class("classification") is ClassificationTask and "classification" in TASKS
    with pytest.raises(ValueError, match=r"unknown task 'detektion'.*\['classification', 'detection', 'segmentation'\]\. Did you mean: detection\?"):
        task_class("detektion")
    with pytest.raises(ValueError, match="config field 'task' must be one of"):
        load_recipe("fashion-mnist", {"task": "detektion"})
    with pytest.raises(ValueError, match="at least one class"):
        ClassificationTask([])
