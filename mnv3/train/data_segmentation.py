"""Segmentation data for a training run (paper §6.4): Fashion scenes' semantic masks by default (generated into
the cache on first use), or a Cityscapes, Pascal VOC or images/ + masks/ folder."""

from __future__ import annotations

from pathlib import Path

from mnv3.data.segmentation import (
    CITYSCAPES_CLASSES,
    FASHION_SCENES_CLASSES,
    VOC_CLASSES,
    SegmentationPairs,
    cityscapes_label_map,
    cityscapes_pairs,
    fashion_scenes_pairs,
    folder_pairs,
    segmentation_eval_transform,
    segmentation_train_transform,
    voc_pairs,
)
from mnv3.train.config import TrainConfig
from mnv3.train.data import DataBundle
from mnv3.train.data_detection import FASHION_SCENES, fashion_scenes_root
from mnv3.train.distributed import DistInfo
from mnv3.utils.preprocessing import IMAGENET, Preprocessing


def dataset_layout(root: Path) -> tuple[str, list[str], object, object, object]:
    """(layout name, classes, label map, train pairs, eval pairs) of a dataset folder, told by its folders."""
    if (root / "leftImg8bit").is_dir():
        return "cityscapes", list(CITYSCAPES_CLASSES), cityscapes_label_map(), cityscapes_pairs(root, "train"), cityscapes_pairs(root, "val")
    if (root / "SegmentationClass").is_dir():
        return "voc", list(VOC_CLASSES), None, voc_pairs(root, "train"), voc_pairs(root, "val")
    val = next((d for d in ("val", "test") if (root / d / "images").is_dir()), None)
    if (root / "train" / "images").is_dir() and val is not None:
        classes = [line.strip() for line in (root / "classes.txt").read_text().splitlines()] if (root / "classes.txt").is_file() else None
        if classes is None:
            raise FileNotFoundError(f"{root}: an images/ + masks/ dataset needs a classes.txt (one class name per line, id order)")
        return "folder", classes, None, folder_pairs(root / "train" / "images", root / "train" / "masks"), folder_pairs(
            root / val / "images", root / val / "masks"
        )
    raise FileNotFoundError(
        f"{root} is not a segmentation dataset mnv3 reads: expected Cityscapes (leftImg8bit/, gtFine/), Pascal VOC "
        "(JPEGImages/, SegmentationClass/, ImageSets/Segmentation/) or train/ and val/ folders with images/ and masks/ plus classes.txt"
    )


def segmentation_data(cfg: TrainConfig, info: DistInfo | None = None) -> DataBundle:
    """The train and evaluation pairs of a segmentation run, with the preprocessing saved beside the weights."""
    info = info or DistInfo()
    mean = tuple(cfg.mean) if cfg.mean is not None else IMAGENET.mean
    std = tuple(cfg.std) if cfg.std is not None else IMAGENET.std
    size = cfg.resolution
    if cfg.data in (None, "", FASHION_SCENES):
        root = fashion_scenes_root(cfg, info)
        name, classes, label_map = FASHION_SCENES, list(FASHION_SCENES_CLASSES), None
        train_pairs, val_pairs, val_name = fashion_scenes_pairs(root, "train"), fashion_scenes_pairs(root, "test"), "test"
    else:
        root = Path(str(cfg.data))
        if not root.is_dir():
            raise FileNotFoundError(f"--data {cfg.data!r} is neither 'fashion-scenes' nor a folder")
        name = str(root)
        _, classes, label_map, train_pairs, val_pairs = dataset_layout(root)  # type: ignore[assignment]
        val_name = "val"
        if cfg.train_subset:
            train_pairs = train_pairs[: cfg.train_subset]  # type: ignore[index]
        if cfg.val_subset:
            val_pairs = val_pairs[: cfg.val_subset]  # type: ignore[index]
    train = SegmentationPairs(
        train_pairs, classes, label_map=label_map, transforms=segmentation_train_transform(size, mean, std, hflip=cfg.hflip),  # type: ignore[arg-type]
        strict=cfg.strict, seed=cfg.seed, source=f"{name} train",
    )  # fmt: skip
    val = SegmentationPairs(
        val_pairs, classes, label_map=label_map, transforms=segmentation_eval_transform(size, mean, std), strict=cfg.strict,  # type: ignore[arg-type]
        source=f"{name} {val_name}",
    )  # fmt: skip
    pp = Preprocessing(resize=size, crop=size, interpolation=cfg.interpolation, mean=mean, std=std, grayscale=False)
    return DataBundle(name, train, val, classes, pp, 3, val_name)  # type: ignore[arg-type]
