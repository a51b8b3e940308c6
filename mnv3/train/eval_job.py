"""Evaluate any weights source (``mnv3 eval``): a classifier on Fashion-MNIST or an image folder, a detector on
Fashion scenes or a COCO-layout folder, a segmenter on Fashion scenes' masks, Cityscapes, VOC or a mask folder,
through one job and the task interface.

The weights come through the one resolver (:func:`mnv3.weights.load_model`: named entry, mnv3 file, foreign
checkpoint, run folder, training checkpoint); the task follows the network's spec (classification when
``spec.detection`` is None, else :class:`~mnv3.tasks.DetectionTask` with the head spec's settings) and the images
get the weights' own preprocessing.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mnv3.data import fashion_mnist as fm
from mnv3.data.eval_sets import eval_set, spread
from mnv3.spec.types import ModelSpec
from mnv3.tasks.base import Evaluation, Task
from mnv3.tasks.classification import ClassificationTask, EvalResult
from mnv3.tasks.detection import COCO_STATS, DetectionEvalResult, DetectionTask
from mnv3.tasks.segmentation import SegmentationEvalResult, SegmentationTask
from mnv3.train.data_detection import FASHION_SCENES, coco_split
from mnv3.train.distributed import resolve_device
from mnv3.train.evaluate import evaluate
from mnv3.utils.atomic import atomic_write_bytes
from mnv3.weights.io import WeightsMeta
from mnv3.weights.resolve import load_model

# pycocotools' COCOeval.summarize() labels of the 12 numbers, in COCO_STATS' order
_COCO_LABELS = [
    ("Precision", "AP", "0.50:0.95", "all", 100), ("Precision", "AP", "0.50", "all", 100), ("Precision", "AP", "0.75", "all", 100),
    ("Precision", "AP", "0.50:0.95", "small", 100), ("Precision", "AP", "0.50:0.95", "medium", 100),
    ("Precision", "AP", "0.50:0.95", "large", 100), ("Recall", "AR", "0.50:0.95", "all", 1), ("Recall", "AR", "0.50:0.95", "all", 10),
    ("Recall", "AR", "0.50:0.95", "all", 100), ("Recall", "AR", "0.50:0.95", "small", 100),
    ("Recall", "AR", "0.50:0.95", "medium", 100), ("Recall", "AR", "0.50:0.95", "large", 100),
]  # fmt: skip


def _report_dir(source: str | os.PathLike) -> Path:
    """Where reports go by default: the run folder itself, else the folder holding the weights file."""
    p = Path(source)
    return p if p.is_dir() else p.parent if p.exists() else Path.cwd()


def task_for(spec: ModelSpec, classes: Sequence[str]) -> Task:
    """The task a network is evaluated by: detection with its head spec's settings (§6.3), segmentation (§6.4),
    else classification."""
    if spec.detection is not None:
        return DetectionTask.from_head(classes, spec.detection)
    if spec.segmentation is not None:
        return SegmentationTask(classes)
    return ClassificationTask(classes)


def detector_classes(spec: ModelSpec, meta: WeightsMeta | None) -> list[str]:
    """A detector's category names for labels 1..K (the background, label 0, left out; ``class i`` where unnamed)."""
    k = spec.num_classes - 1
    names = list(meta.categories) if meta is not None else []
    if len(names) == k + 1:  # torchvision's COCO list names the background too
        return names[1:]
    return names if len(names) == k else [f"class {i}" for i in range(1, k + 1)]


@dataclass
class EvalData:
    """An evaluation set: the dataset, its class names, how to batch it, its name and split."""

    dataset: Dataset
    classes: list[str]
    name: str
    split: str
    collate: Any = None


class _RelabelledDetection(DetectionTask):
    """Detection scored on a dataset whose categories are a subset of the model's, matched by name (COCO's 80 of 91)."""

    def __init__(self, base: DetectionTask, model_to_data: torch.Tensor) -> None:
        super().__init__(base.classes, base.loss_spec, base.matcher, base.box_coder)
        self.model_to_data = model_to_data  # model label -> dataset label, 0 = not in the dataset

    def predict(self, model: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The model's detections with labels renamed to the dataset's; classes it lacks are dropped."""
        out = []
        for d in super().predict(model, images):
            labels = self.model_to_data.to(d["labels"].device)[d["labels"]]
            keep = labels > 0
            out.append({"boxes": d["boxes"][keep], "scores": d["scores"][keep], "labels": labels[keep]})
        return out


def _detection_task(spec: ModelSpec, meta: WeightsMeta, data: EvalData) -> DetectionTask:
    """The detection task of the model on ``data``: same classes, or the dataset's by name when it has fewer."""
    assert spec.detection is not None
    task = DetectionTask.from_head(data.classes, spec.detection)
    mine = detector_classes(spec, meta)
    if mine == data.classes or (len(mine) == len(data.classes) and not meta.categories):
        return task
    if meta.categories and set(data.classes) <= set(mine):
        index = {n: i for i, n in enumerate(data.classes, start=1)}
        return _RelabelledDetection(task, torch.tensor([0] + [index.get(n, 0) for n in mine], dtype=torch.int64))
    raise ValueError(
        f"the model detects {len(mine)} categories ({', '.join(mine[:3])}, ...) but {data.name} has {len(data.classes)} "
        f"({', '.join(data.classes[:3])}, ...) that are not among them; evaluate on data with the model's categories, "
        "or fine-tune it on this data (mnv3 train --task detect --data ...)"
    )


def _fashion_scenes_counts(meta: WeightsMeta, task: str = "detection") -> tuple[int, int]:
    """(train, test) scene counts of the set a run's recipe trained on, else the default set's."""
    from mnv3.data.detection.scenes import DEFAULT_TEST, DEFAULT_TRAIN

    r = meta.recipe
    if r.get("task") == task and r.get("data") in (None, "", FASHION_SCENES):
        return int(r.get("train_subset") or DEFAULT_TRAIN), int(r.get("val_subset") or DEFAULT_TEST)
    return DEFAULT_TRAIN, DEFAULT_TEST


def detection_eval_data(
    data: str, split: str, meta: WeightsMeta, subset: int | None = None, data_dir: str | None = None
) -> EvalData:
    """A detector's evaluation set: the cached Fashion scenes (the run's own set when its recipe names one) or a COCO folder."""
    from mnv3.data.detection import CocoDetection, detection_collate, detection_eval_transform, ensure_fashion_scenes

    if data == FASHION_SCENES:
        train_n, test_n = _fashion_scenes_counts(meta)
        root = ensure_fashion_scenes(train=train_n, test=test_n, seed=0, data_dir=data_dir, progress=False)
    else:
        root = Path(data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {data!r} is neither '{FASHION_SCENES}' nor a folder of COCO-format data")
    images, ann, found = coco_split(root, split)
    pp = meta.preprocessing
    ds = CocoDetection(images, ann, include_crowd=True, transforms=detection_eval_transform(pp.crop, pp.mean, pp.std))
    ds.records = [ds.records[i] for i in spread(len(ds.records), subset)]
    return EvalData(ds, list(ds.classes), f"{data} {found} ({len(ds.records)} images)", found, detection_collate)


def segmentation_eval_data(data: str, split: str, meta: WeightsMeta, subset: int | None = None, data_dir: str | None = None) -> EvalData:
    """A segmenter's evaluation set: Fashion scenes' semantic masks (the run's own set when its recipe names one),
    or a Cityscapes / VOC / images + masks folder, at the weights' input size."""
    from mnv3.data.segmentation import (
        FASHION_SCENES_CLASSES,
        SegmentationPairs,
        fashion_scenes_pairs,
        weights_eval_transform,
    )
    from mnv3.train.data_segmentation import dataset_layout

    pp = meta.preprocessing
    if data == FASHION_SCENES:
        from mnv3.data.detection import ensure_fashion_scenes

        train_n, test_n = _fashion_scenes_counts(meta, "segmentation")
        root = ensure_fashion_scenes(train=train_n, test=test_n, seed=0, data_dir=data_dir, progress=False)
        classes, label_map, pairs = list(FASHION_SCENES_CLASSES), None, fashion_scenes_pairs(root, split)
    else:
        root = Path(data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {data!r} is neither '{FASHION_SCENES}' nor a segmentation dataset folder")
        _, classes, label_map, _, pairs = dataset_layout(root)
    pairs = [pairs[i] for i in spread(len(pairs), subset)]  # type: ignore[index, arg-type]
    ds = SegmentationPairs(pairs, classes, label_map=label_map, transforms=weights_eval_transform(pp))  # type: ignore[arg-type]
    return EvalData(ds, list(classes), f"{data} {split} ({len(ds)} images)", split)


def _classification_eval_data(data: str, split: str, meta: WeightsMeta, subset: int | None, data_dir: str | None) -> EvalData:
    """A classifier's evaluation set (Fashion-MNIST or an image folder) in the weights' category order."""
    if data == FASHION_SCENES:
        raise ValueError(f"--data {FASHION_SCENES} is a detection set and this network is a classifier; use {fm.NAME} or an image folder")
    if meta.categories and data == fm.NAME and meta.categories != list(fm.CLASSES):
        warnings.warn(f"the model's categories {meta.categories[:3]}... are not Fashion-MNIST's", stacklevel=3)
    es = eval_set(data, meta.preprocessing, split=split, categories=meta.categories or None, limit=subset, data_dir=data_dir)
    return EvalData(es.dataset, es.classes, es.name, split)


def run_eval(
    source: str | os.PathLike,
    data: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    workers: int = 0,
    *,
    model: str | None = None,
    preset: str | None = None,
    runner: Callable[[nn.Module], nn.Module] | None = None,
    runner_name: str | None = None,
) -> tuple[Evaluation, Path]:
    """Evaluate, then write ``eval-<split>.json`` and the task's figures (next to the weights by default).

    ``data`` defaults to Fashion-MNIST for a classifier and Fashion scenes for a detector, ``split`` to test;
    ``subset`` takes that many images spread over the whole set (every class of a class-ordered folder).
    ``runner`` replaces the loaded network by what computes its forward pass (an exported file in its runtime:
    :class:`mnv3.deploy.exported.ExportedModel`); the reports then carry ``runner_name`` in their file names.
    """
    net = load_model(source, model=model, preset=preset)
    meta, spec = net.weights_meta, net.spec
    split = split or "test"
    if spec.segmentation is not None:
        ed = segmentation_eval_data(data or FASHION_SCENES, split, meta, subset, data_dir)
        if spec.num_classes != len(ed.classes):
            raise ValueError(f"the model segments {spec.num_classes} classes but {ed.name} has {len(ed.classes)}; evaluate on data with the model's classes")
        task = task_for(spec, ed.classes)
    elif spec.detection is None:
        ed = _classification_eval_data(data or fm.NAME, split, meta, subset, data_dir)
        if spec.num_classes != len(ed.classes):
            raise ValueError(
                f"the model predicts {spec.num_classes} classes but {ed.name} has {len(ed.classes)}; evaluate on data with the "
                "model's classes, or fine-tune it on this data (mnv3 train --set weights=...)"
            )
        task = task_for(spec, ed.classes)
    else:
        ed = detection_eval_data(data or FASHION_SCENES, split, meta, subset, data_dir)
        task = _detection_task(spec, meta, ed)
    if spec.segmentation is not None and meta.preprocessing.keep_aspect:
        batch_size = 1  # images keep their aspect ratio, so their sizes differ (torchvision's segmentation reference evaluates one at a time)
    loader = DataLoader(ed.dataset, batch_size=batch_size, num_workers=workers, collate_fn=ed.collate)
    dev = resolve_device(device) if runner is None else torch.device("cpu")  # a runtime's file runs on the CPU
    result = evaluate((runner(net.eval()) if runner is not None else net.to(dev)).eval(), loader, task, dev)
    out = Path(out_dir) if out_dir else _report_dir(source)
    out.mkdir(parents=True, exist_ok=True)
    default = fm.NAME if spec.detection is None and spec.segmentation is None else FASHION_SCENES
    report = {"source": str(source), "data": str(data or default), "split": ed.split,
              **({"artifact": runner_name} if runner_name else {}), **result.to_dict()}  # fmt: skip
    tag = f"-{ed.split}" + (f"-{Path(runner_name).name}" if runner_name else "")
    atomic_write_bytes(out / f"eval{tag}.json", json.dumps(report, indent=2).encode())
    title = Path(runner_name).name if runner_name else Path(str(source)).name
    task.write_reports(result, out, f"{title} on {report['data']} {ed.split}", suffix=tag)
    return result, out


def report_lines(result: Evaluation) -> list[str]:
    """What ``mnv3 eval`` prints: top-1 / top-5 and per-class accuracy, or the 12 COCO numbers and per-class AP."""
    if isinstance(result, DetectionEvalResult):
        lines = [
            f" {'Average ' + title:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={dets:>3d} ] = {result.stats[k]:0.3f}"
            for k, (title, kind, iou, area, dets) in zip(COCO_STATS, _COCO_LABELS, strict=True)
        ]
        lines.append(f"({result.count} images, {result.detections} detections)")
        w = max(len(n) for n in result.per_class_ap)
        lines.append("per-class AP@[.5:.95]:")
        lines += [f"  {n:<{w}}  {100 * ap:6.2f}" for n, ap in result.per_class_ap.items()]
        return lines
    if isinstance(result, SegmentationEvalResult):
        lines = [f"mIoU {100 * result.miou:.2f} %   pixel accuracy {100 * result.pixel_accuracy:.2f} %   ({result.count} images)", "per-class IoU:"]
        w = max(len(n) for n in result.classes)
        lines += [f"  {n:<{w}}  {'  n/a' if math.isnan(v) else f'{100 * v:6.2f} %'}" for n, v in zip(result.classes, result.iou, strict=True)]
        return lines
    assert isinstance(result, EvalResult)
    lines = [f"top-1 {100 * result.top1:.2f} %   top-5 {100 * result.top5:.2f} %   loss {result.loss:.4f}   ({result.count} images)"]
    names = result.classes or [str(i) for i in range(len(result.per_class))]
    w = max(len(n) for n in names)
    lines.append("per-class accuracy:")
    for n, acc in zip(names, result.per_class, strict=True):
        lines.append(f"  {n:<{w}}  {'  n/a' if math.isnan(acc) else f'{100 * acc:6.2f} %'}")
    return lines
