"""Evaluate any weights source on Fashion-MNIST or an image folder (``mnv3 eval``).

The weights come through the one resolver (:func:`mnv3.weights.load_model`: named entry, mnv3
file, foreign checkpoint, run folder, training checkpoint) and the images through the one
evaluation-set builder (:func:`mnv3.data.eval_sets.eval_set`) with the weights' own preprocessing.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from torch.utils.data import DataLoader

from mnv3.data import fashion_mnist as fm
from mnv3.data.eval_sets import eval_set
from mnv3.tasks.classification import ClassificationTask, EvalResult
from mnv3.train.distributed import resolve_device
from mnv3.train.evaluate import evaluate
from mnv3.utils.atomic import atomic_write_bytes
from mnv3.weights.resolve import load_model


def _report_dir(source: str | os.PathLike) -> Path:
    """Where reports go by default: the run folder itself, else the folder holding the weights file."""
    p = Path(source)
    return p if p.is_dir() else p.parent if p.exists() else Path.cwd()


def run_eval(
    source: str | os.PathLike,
    data: str = fm.NAME,
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    out_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    workers: int = 0,
    *,
    model: str | None = None,
    preset: str | None = None,
) -> tuple[EvalResult, Path]:
    """Evaluate, then write ``eval-<split>.json`` and ``confusion-<split>.png`` (next to the weights by default).

    ``subset`` takes that many images spread over the whole set (every class of a class-ordered folder).
    """
    net = load_model(source, model=model, preset=preset)
    meta = net.weights_meta
    if meta.categories and data == fm.NAME and meta.categories != list(fm.CLASSES):
        warnings.warn(f"the model's categories {meta.categories[:3]}... are not Fashion-MNIST's", stacklevel=2)
    es = eval_set(data, meta.preprocessing, split=split, categories=meta.categories or None, limit=subset, data_dir=data_dir)
    num_classes = net.spec.num_classes
    if num_classes != len(es.classes):
        raise ValueError(
            f"the model predicts {num_classes} classes but {es.name} has {len(es.classes)}; evaluate on data with the "
            "model's classes, or fine-tune it on this data (mnv3 train --set weights=...)"
        )
    loader = DataLoader(es.dataset, batch_size=batch_size, num_workers=workers)
    dev = resolve_device(device)
    task = ClassificationTask(es.classes)
    result = evaluate(net.to(dev).eval(), loader, task, dev)
    assert isinstance(result, EvalResult)
    out = Path(out_dir) if out_dir else _report_dir(source)
    out.mkdir(parents=True, exist_ok=True)
    report = {"source": str(source), "data": str(data), "split": split, **result.to_dict()}
    atomic_write_bytes(out / f"eval-{split}.json", json.dumps(report, indent=2).encode())
    task.write_reports(result, out, f"{Path(str(source)).name} on {data} {split}", suffix=f"-{split}")
    return result, out
