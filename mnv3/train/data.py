"""From a :class:`TrainConfig` to datasets and per-epoch loaders (DistributedSampler under torchrun).

Fashion-MNIST: the 60,000 training images and the 10,000 test images (the evaluation split unless
``val_split`` holds out part of the training set). Folders: ``root/train`` with ``root/val`` (or
``validation`` / ``test``), or a single ``root`` with ``val_split``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from mnv3.data import fashion_mnist as fm
from mnv3.data.datasets import TensorImageDataset, TransformedDataset
from mnv3.data.folder import FolderDataset, FolderIndex, scan_folder
from mnv3.data.transforms import eval_transform, train_transform
from mnv3.train.config import TrainConfig
from mnv3.train.distributed import DistInfo, broadcast_object
from mnv3.utils.preprocessing import IMAGENET, Preprocessing

FASHION_MNIST = "fashion-mnist"
VAL_DIRS = ("val", "validation", "test")


@dataclass
class DataBundle:
    """Everything the loop needs to know about the data."""

    name: str
    train: TransformedDataset
    val: TransformedDataset | None
    classes: list[str]
    preprocessing: Preprocessing
    in_chans: int
    val_name: str = "val"
    collate: Callable[[list[Any]], Any] | None = None  # None: torch's default_collate (detection keeps target lists)


def balanced_order(labels: torch.Tensor) -> list[int]:
    """Indices interleaved class by class (0, 1, ..., 9, 0, 1, ...), so any prefix is class-balanced."""
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(int(labels.max()) + 1)]
    out: list[int] = []
    for i in range(max(len(p) for p in per_class)):
        out += [p[i] for p in per_class if i < len(p)]
    return out


def _split(n: int, frac: float) -> tuple[list[int], list[int]]:
    """A fixed (seed 0) random split of range(n) into train and held-out indices."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    k = int(round(n * frac))
    return sorted(perm[k:]), sorted(perm[:k])


def _subset(ds: Dataset, n: int | None, order: list[int] | None = None) -> Dataset:
    if n is None:
        return ds
    order = order if order is not None else list(range(len(ds)))  # type: ignore[arg-type]
    if n <= 0 or n > len(order):
        raise ValueError(f"subset size must be in 1..{len(order)}, got {n}")
    return Subset(ds, sorted(order[:n]))


def _normalisation(cfg: TrainConfig, channels: int, default_mean: float | tuple, default_std: float | tuple) -> tuple[tuple, tuple]:
    mean = cfg.mean if cfg.mean is not None else default_mean
    std = cfg.std if cfg.std is not None else default_std
    mean = tuple(mean) if isinstance(mean, (list, tuple)) else (mean,) * channels
    std = tuple(std) if isinstance(std, (list, tuple)) else (std,) * channels
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need {channels} values for {channels}-channel input, got {list(mean)} / {list(std)}")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _train_tf(cfg: TrainConfig, mean: tuple, std: tuple):
    return train_transform(
        cfg.resolution,
        mean,
        std,
        crop=cfg.crop,
        crop_scale=cfg.crop_scale,
        crop_padding=cfg.crop_padding,
        hflip=cfg.hflip,
        auto_augment=cfg.auto_augment,
        randaugment_magnitude=cfg.randaugment_magnitude,
        random_erasing=cfg.random_erasing,
        interpolation=cfg.interpolation,
    )


def preprocessing_for(cfg: TrainConfig) -> Preprocessing:
    """What a model trained with ``cfg`` expects at inference (saved with its weights), without reading data."""
    if cfg.data == FASHION_MNIST:
        gray = True if cfg.grayscale is None else cfg.grayscale
        mean, std = _normalisation(cfg, 1 if gray else 3, fm.MEAN, fm.STD)
        return Preprocessing(resize=cfg.resolution, crop=cfg.resolution, interpolation=cfg.interpolation, mean=mean, std=std, grayscale=gray)
    gray = bool(cfg.grayscale)
    mean, std = _normalisation(cfg, 1 if gray else 3, IMAGENET.mean if not gray else 0.449, IMAGENET.std if not gray else 0.226)
    return Preprocessing(
        resize=int(round(cfg.resolution / cfg.crop_pct)), crop=cfg.resolution, interpolation=cfg.interpolation, mean=mean, std=std, grayscale=gray
    )


def build_data(cfg: TrainConfig, info: DistInfo | None = None) -> DataBundle:
    """Datasets of the configured source with their transforms and the preprocessing to save with the weights."""
    info = info or DistInfo()
    if not cfg.data:
        raise ValueError("this recipe needs a dataset: pass --data PATH (an ImageFolder root with train/ and val/, such as ImageNet)")
    if cfg.data == FASHION_MNIST:
        return _fashion_mnist(cfg)
    return _folder(cfg, info)


def _fashion_mnist(cfg: TrainConfig) -> DataBundle:
    gray = True if cfg.grayscale is None else cfg.grayscale
    channels = 1 if gray else 3
    x, y = fm.load_split("train", cfg.data_dir, cfg.download)
    train_base: Dataset = TensorImageDataset(x, y, fm.CLASSES, channels)
    pp = preprocessing_for(cfg)
    mean, std = pp.mean, pp.std
    if cfg.val_split > 0:
        tr, va = _split(len(x), cfg.val_split)
        val_base: Dataset = Subset(train_base, va)
        train_base = Subset(train_base, tr)
        val_name = "val"
        train_base = _subset(train_base, cfg.train_subset)
    else:
        xt, yt = fm.load_split("test", cfg.data_dir, cfg.download)
        val_base = TensorImageDataset(xt, yt, fm.CLASSES, channels)
        val_name = "test"
        train_base = _subset(train_base, cfg.train_subset, balanced_order(y))
        val_base = _subset(val_base, cfg.val_subset, balanced_order(yt))
    train = TransformedDataset(train_base, _train_tf(cfg, mean, std), seed=cfg.seed)
    val = TransformedDataset(val_base, eval_transform(pp))
    return DataBundle(FASHION_MNIST, train, val, list(fm.CLASSES), pp, channels, val_name)


def _folder(cfg: TrainConfig, info: DistInfo) -> DataBundle:
    root = Path(str(cfg.data))
    if not root.is_dir():
        raise FileNotFoundError(f"--data {cfg.data!r} is neither 'fashion-mnist' nor an existing folder")
    train_root = root / "train" if (root / "train").is_dir() else root
    val_root = next((root / d for d in VAL_DIRS if (root / d).is_dir()), None) if train_root != root else None
    if val_root is None and cfg.val_split <= 0:
        raise ValueError(f"{root} has no val/ or test/ folder; add one, or hold out part of the images with --set val_split=0.1")

    def scan() -> tuple[FolderIndex, FolderIndex | None]:
        tr = scan_folder(train_root, verify=cfg.verify_images, strict=cfg.strict)
        va = scan_folder(val_root, classes=tr.classes, verify=cfg.verify_images, strict=cfg.strict) if val_root else None
        return tr, va

    # Rank 0 checks the files once and tells the others (a bad file is reported once).
    indexes = scan() if info.is_main else None
    tr_index, va_index = broadcast_object(indexes) if info.enabled else indexes  # type: ignore[misc]
    gray = bool(cfg.grayscale)
    channels = 1 if gray else 3
    pp = preprocessing_for(cfg)
    mean, std = pp.mean, pp.std
    train_base: Dataset = FolderDataset(tr_index, gray)
    if va_index is not None:
        val_base: Dataset = FolderDataset(va_index, gray)
    else:
        tr, va = _split(len(train_base), cfg.val_split)  # type: ignore[arg-type]
        val_base, train_base = Subset(train_base, va), Subset(train_base, tr)
    train_base = _subset(train_base, cfg.train_subset)
    val_base = _subset(val_base, cfg.val_subset)
    train = TransformedDataset(train_base, _train_tf(cfg, mean, std), seed=cfg.seed)
    val = TransformedDataset(val_base, eval_transform(pp))
    return DataBundle(str(root), train, val, tr_index.classes, pp, channels, "val")


def per_rank_batch(global_batch: int, info: DistInfo) -> int:
    """The batch each process takes; the global batch must split evenly."""
    if global_batch % info.world_size:
        raise ValueError(f"batch_size {global_batch} does not split over {info.world_size} processes; use a multiple of {info.world_size}")
    return global_batch // info.world_size


def train_sampler(ds: Dataset, info: DistInfo, seed: int) -> DistributedSampler:
    """The shuffling sampler (also for one process, so the global order never depends on the process count)."""
    return DistributedSampler(ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed, drop_last=False)


def steps_per_epoch(ds: Dataset, info: DistInfo, global_batch: int) -> int:
    """Optimizer steps in one epoch (incomplete last batches are dropped)."""
    n = len(train_sampler(ds, info, 0)) // per_rank_batch(global_batch, info)
    if n == 0:
        raise ValueError(f"batch_size {global_batch} is larger than the training set ({len(ds)} images); lower --batch-size")  # type: ignore[arg-type]
    return n


def train_loader(
    ds: TransformedDataset, info: DistInfo, cfg: TrainConfig, epoch: int, start_batch: int, pin: bool, collate: Callable | None = None
) -> DataLoader:
    """The loader of one epoch, skipping the ``start_batch`` batches a resumed run has already seen."""
    ds.epoch = epoch
    sampler = train_sampler(ds, info, cfg.seed)
    sampler.set_epoch(epoch)
    b = per_rank_batch(cfg.batch_size, info)
    indices = list(sampler)[start_batch * b :]
    return DataLoader(
        ds,
        batch_size=b,
        sampler=indices,
        drop_last=True,
        num_workers=cfg.workers,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
        persistent_workers=False,
        collate_fn=collate,
    )


def eval_loader(ds: Dataset, info: DistInfo, cfg: TrainConfig, pin: bool = False, collate: Callable | None = None) -> DataLoader:
    """Disjoint, unpadded shards (rank, rank + world, ...), so summed counts are exact."""
    b = max(1, (cfg.eval_batch_size or cfg.batch_size) // info.world_size)
    indices = list(range(info.rank, len(ds), info.world_size))  # type: ignore[arg-type]
    return DataLoader(
        ds, batch_size=b, sampler=indices, num_workers=cfg.workers, pin_memory=pin, generator=torch.Generator().manual_seed(0), collate_fn=collate
    )
