"""Evaluate saved weights or a training checkpoint on Fashion-MNIST or an image folder (``mnv3 eval``)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from mnv3.data import fashion_mnist as fm
from mnv3.data.datasets import TensorImageDataset, TransformedDataset
from mnv3.data.folder import FolderDataset, scan_folder
from mnv3.data.transforms import eval_transform
from mnv3.train.distributed import resolve_device
from mnv3.train.evaluate import EvalResult, evaluate
from mnv3.utils.preprocessing import Preprocessing


@dataclass
class LoadedModel:
    """A network ready for evaluation with the preprocessing and class names it expects."""

    model: nn.Module
    preprocessing: Preprocessing
    categories: list[str]
    source: Path


def load_for_eval(source: str | Path) -> LoadedModel:
    """From an mnv3 ``.safetensors`` file, a run folder (its model.safetensors, else last.pt) or a ``.pt`` checkpoint."""
    from mnv3.weights.io import model_from_file

    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").is_file() else path / "last.pt"
    if not path.exists():
        raise FileNotFoundError(f"{str(source)!r} is not a weights file, checkpoint or run folder")
    if path.suffix == ".pt":
        return _from_checkpoint(path)
    model, meta = model_from_file(path)
    return LoadedModel(model, meta.preprocessing, list(meta.categories), path)


def _from_checkpoint(path: Path) -> LoadedModel:
    from mnv3.train.checkpoint import load_checkpoint
    from mnv3.train.config import config_from_dict
    from mnv3.train.data import preprocessing_for
    from mnv3.train.engine import build_model

    ckpt = load_checkpoint(path)
    cfg = config_from_dict({**ckpt["config"], "weights": None, "qat": False, "train_subset": None, "val_subset": None})
    pp = preprocessing_for(cfg)
    model = build_model(cfg, len(ckpt["classes"]), 1 if pp.grayscale else 3)
    if ckpt.get("ema"):
        state = {k[len("module.") :]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    else:
        state = ckpt["model"]
    model.load_state_dict(state)
    return LoadedModel(model, pp, list(ckpt["classes"]), path)


def eval_dataset(data: str, pp: Preprocessing, categories: list[str], split: str = "test", data_dir: str | None = None, strict: bool = False):
    """The evaluation split with the transforms ``pp`` describes, labelled in the model's category order."""
    tf = eval_transform(pp)
    channels = 1 if pp.grayscale else 3
    if data == "fashion-mnist":
        x, y = fm.load_split("train" if split == "train" else "test", data_dir)
        return TransformedDataset(TensorImageDataset(x, y, fm.CLASSES, channels), tf), list(fm.CLASSES)
    root = Path(data)
    sub = root / split if (root / split).is_dir() else root
    index = scan_folder(sub, strict=strict)
    if categories:
        missing = [c for c in index.classes if c not in categories]
        if missing:
            raise ValueError(f"{sub} has class folder(s) {missing} that the model does not know; its categories: {categories}")
        remap = [categories.index(c) for c in index.classes]
        index.samples = [(p, remap[y]) for p, y in index.samples]
        index.classes = list(categories)
    return TransformedDataset(FolderDataset(index, pp.grayscale), tf), index.classes


def run_eval(
    source: str | Path,
    data: str = "fashion-mnist",
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int = 256,
    device: str = "auto",
    output: str | Path | None = None,
    subset: int | None = None,
    workers: int = 0,
) -> tuple[EvalResult, Path]:
    """Evaluate, then write ``eval-<split>.json`` and ``confusion-<split>.png`` (next to the weights by default)."""
    from mnv3.train.plots import plot_confusion
    from mnv3.utils.atomic import atomic_write_bytes

    loaded = load_for_eval(source)
    ds, classes = eval_dataset(data, loaded.preprocessing, loaded.categories, split, data_dir)
    if loaded.categories and data == "fashion-mnist" and loaded.categories != list(fm.CLASSES):
        warnings.warn(f"the model's categories {loaded.categories[:3]}... are not Fashion-MNIST's", stacklevel=2)
    num_classes = loaded.model.num_classes if hasattr(loaded.model, "num_classes") else len(classes)
    if num_classes != len(classes):
        raise ValueError(f"the model predicts {num_classes} classes but the data has {len(classes)}")
    indices = list(range(len(ds) if subset is None else min(subset, len(ds))))
    loader = DataLoader(ds, batch_size=batch_size, sampler=indices, num_workers=workers, generator=torch.Generator().manual_seed(0))
    dev = resolve_device(device)
    model = loaded.model.to(dev).eval()
    result = evaluate(model, loader, num_classes, dev, classes=classes)
    out = Path(output) if output else loaded.source.parent
    out.mkdir(parents=True, exist_ok=True)
    report = {"source": str(loaded.source), "data": data, "split": split, **result.to_dict()}
    atomic_write_bytes(out / f"eval-{split}.json", json.dumps(report, indent=2).encode())
    plot_confusion(result.confusion, classes, out / f"confusion-{split}.png", f"{loaded.source.name} on {data} {split}: top-1 {100 * result.top1:.2f} %")
    return result, out
