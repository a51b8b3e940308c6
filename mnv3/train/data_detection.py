"""Detection data for a training run (paper §6.3): Fashion scenes by default (generated into the cache on first
use), or a COCO-layout folder; SSD's box-aware v2 augmentation; targets kept as per-image lists."""

from __future__ import annotations

from pathlib import Path

from mnv3.data.detection import (
    CocoDetection,
    detection_collate,
    detection_eval_transform,
    detection_train_transform,
    ensure_fashion_scenes,
)
from mnv3.train.config import TrainConfig
from mnv3.train.data import DataBundle
from mnv3.train.distributed import DistInfo, barrier
from mnv3.utils.preprocessing import IMAGENET, Preprocessing

FASHION_SCENES = "fashion-scenes"
# (split, images folder, instances file) in the layouts mnv3 reads: fashion scenes' and COCO 2017's, in the order tried
_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("train", "train/images", "train/instances.json"), ("train", "train2017", "annotations/instances_train2017.json"),
    ("val", "val/images", "val/instances.json"), ("test", "test/images", "test/instances.json"),
    ("val", "val2017", "annotations/instances_val2017.json"),
)  # fmt: skip
COCO_SPLITS = ("train", "val", "test")


def coco_split(root: Path, *splits: str) -> tuple[Path, Path, str]:
    """(images folder, instances file, split) of the first of ``splits`` that ``root`` holds in a known COCO layout."""
    unknown = [s for s in splits if s not in COCO_SPLITS]
    if unknown:
        raise ValueError(f"unknown split {unknown[0]!r}; a COCO-layout folder has {', '.join(COCO_SPLITS)}")
    layouts = [lay for lay in _LAYOUTS if lay[0] in splits]
    for split, images, ann in layouts:
        if (root / images).is_dir() and (root / ann).is_file():
            return root / images, root / ann, split
    wanted = " or ".join(f"{a} with {i}/" for _, i, a in layouts)
    raise FileNotFoundError(f"{root} has no {' or '.join(splits)} split: expected {wanted} (COCO format)")


def _limit(ds: CocoDetection, n: int | None) -> CocoDetection:
    if n is not None:
        if n <= 0 or n > len(ds.records):
            raise ValueError(f"subset size must be in 1..{len(ds.records)}, got {n}")
        ds.records = ds.records[:n]
    return ds


def fashion_scenes_root(cfg: TrainConfig, info: DistInfo) -> Path:
    """The cached Fashion scenes set a run trains on (``train_subset`` / ``val_subset`` scenes, seed 0): rank 0
    generates it on first use, the other ranks wait, then find it complete."""
    train_n, test_n = cfg.train_subset or 8000, cfg.val_subset or 1000
    root = None
    if info.is_main:
        root = ensure_fashion_scenes(train=train_n, test=test_n, seed=0, data_dir=cfg.data_dir, download=cfg.download, progress=cfg.progress)
    barrier()
    return root or ensure_fashion_scenes(train=train_n, test=test_n, seed=0, data_dir=cfg.data_dir, progress=False)


def detection_data(cfg: TrainConfig, info: DistInfo | None = None) -> DataBundle:
    """The train and evaluation sets of a detection run, with the preprocessing saved beside the weights."""
    info = info or DistInfo()
    if cfg.data in (None, "", FASHION_SCENES):
        root, name = fashion_scenes_root(cfg, info), FASHION_SCENES
    else:
        root, name = Path(str(cfg.data)), str(cfg.data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {cfg.data!r} is neither 'fashion-scenes' nor a folder of COCO-format data")
    mean = tuple(cfg.mean) if cfg.mean is not None else IMAGENET.mean
    std = tuple(cfg.std) if cfg.std is not None else IMAGENET.std
    size = cfg.resolution
    pp = Preprocessing(resize=size, crop=size, interpolation=cfg.interpolation, mean=mean, std=std, grayscale=False)
    tr_images, tr_ann, _ = coco_split(root, "train")
    va_images, va_ann, val_name = coco_split(root, "val", "test")  # the run evaluates on val, else test
    train = CocoDetection(tr_images, tr_ann, strict=cfg.strict, transforms=detection_train_transform(size, mean, std, hflip=cfg.hflip), seed=cfg.seed)
    val = CocoDetection(va_images, va_ann, strict=cfg.strict, include_crowd=True, transforms=detection_eval_transform(size, mean, std))
    if train.classes != val.classes:
        raise ValueError(f"{root}: the train and evaluation splits have different categories ({train.classes[:3]}... vs {val.classes[:3]}...)")
    if cfg.data not in (None, "", FASHION_SCENES):
        train, val = _limit(train, cfg.train_subset), _limit(val, cfg.val_subset)
    return DataBundle(name, train, val, list(train.classes), pp, 3, val_name, collate=detection_collate)  # type: ignore[arg-type]
