"""Segmentation data (paper §6.4, LR-ASPP): image + class-id mask pairs from Fashion scenes, Cityscapes, Pascal VOC
or an image-folder + mask-folder pair, with mask-aware ``torchvision.transforms.v2`` augmentation.

Masks hold class ids with 255 = ignore (Cityscapes' train ids, VOC's border label, Fashion scenes' item edges).
Every pair is checked when the dataset is built: a missing or unreadable file, a mask whose size differs from
its image, or a mask with a label value outside the classes is skipped and counted in one warning
(``strict=True`` raises a ValueError listing them), so an epoch never stops halfway on a bad file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from mnv3.data.datasets import sample_seed
from mnv3.data.detection.common import Report, read_rgb
from mnv3.data.fashion_mnist import CLASSES as FASHION_CLASSES
from mnv3.utils.preprocessing import Preprocessing

IGNORE = 255
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FASHION_SCENES_CLASSES = ("background", *FASHION_CLASSES)  # mask value 0 is the background, 1..10 the items
# Cityscapes' 19 evaluation classes, in train-id order, with their label ids (cityscapesScripts labels.py,
# https://github.com/mcordts/cityscapesScripts/blob/master/cityscapesscripts/helpers/labels.py)
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
                      "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")  # fmt: skip
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")  # fmt: skip


def cityscapes_label_map() -> np.ndarray:
    """A 256-entry lookup from Cityscapes label ids to the 19 train ids, everything else 255."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    lut[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS), dtype=np.uint8)
    return lut


def _read_mask(path: str | Path, label_map: np.ndarray | None) -> np.ndarray:
    """A mask file as uint8 class ids (a palette PNG gives its indices, as VOC stores classes)."""
    with Image.open(path) as m:
        if m.mode not in ("L", "P", "I;16", "I"):
            raise ValueError(f"mode {m.mode} is not a single-channel class-id mask")
        a = np.asarray(m)
    if a.dtype != np.uint8:
        if a.max(initial=0) > 255:
            raise ValueError(f"label value {int(a.max())} does not fit a uint8 class id")
        a = a.astype(np.uint8)
    return label_map[a] if label_map is not None else a


def _check_pair(image: Path, mask: Path, num_classes: int, label_map: np.ndarray | None) -> tuple[str, str] | None:
    """(kind, detail) of what makes a pair unusable, or None."""
    for p, what in ((image, "image"), (mask, "mask")):
        if not p.is_file():
            return f"missing {what} file", str(p)
    try:
        with Image.open(image) as im:
            size = im.size
        m = _read_mask(mask, label_map)
    except Exception as e:  # noqa: BLE001 - PIL raises many types; any means unreadable
        return "unreadable file", f"{image.name} / {mask.name}: {e}"
    if (m.shape[1], m.shape[0]) != size:
        return "mask size differs from its image", f"{mask.name} is {m.shape[1]}x{m.shape[0]}, {image.name} {size[0]}x{size[1]}"
    bad = np.setdiff1d(np.unique(m), [*range(num_classes), IGNORE])
    if bad.size:
        return "unknown label value", f"{mask.name} holds {bad[:5].tolist()} (classes 0..{num_classes - 1}, ignore {IGNORE})"
    return None


class SegmentationPairs(Dataset):
    """(image, mask) pairs, checked once when built; ``transforms(image, mask)`` runs per sample (v2, mask-aware).

    Samples are (float image (3, H, W), int64 mask (H, W)) after the transforms. With ``seed`` set, a sample's
    augmentation is a pure function of (seed, epoch, index), as for classification and detection.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        classes: Sequence[str],
        *,
        label_map: np.ndarray | None = None,
        transforms: Callable | None = None,
        strict: bool = False,
        seed: int | None = None,
        source: str = "segmentation data",
        threads: int = 4,
    ) -> None:
        if not pairs:
            raise ValueError(f"{source}: no image / mask pairs found")
        self.classes = list(classes)
        self.label_map = label_map
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0
        report = Report()
        with ThreadPoolExecutor(threads) as pool:
            problems = list(pool.map(lambda pm: _check_pair(pm[0], pm[1], len(self.classes), label_map), pairs))
        self.pairs = []
        for (image, mask), problem in zip(pairs, problems, strict=True):
            if problem is None:
                self.pairs.append((image, mask))
            else:
                report.skip(problem[0], str(image), problem[1])
        self.report = report
        report.finish(source, strict)
        if not self.pairs:
            raise ValueError(f"{source}: every pair was unusable ({report.summary()})")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        image_path, mask_path = self.pairs[i]
        image = read_rgb(image_path)
        mask = tv_tensors.Mask(torch.from_numpy(_read_mask(mask_path, self.label_map).copy()))
        if self.transforms is not None:
            if self.seed is None:
                image, mask = self.transforms(image, mask)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, i))
                    image, mask = self.transforms(image, mask)
        return image, mask.as_subclass(torch.Tensor).long()


def _by_stem(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def folder_pairs(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """Pairs of an image folder and a mask folder matched by file stem (``img/0001.jpg`` with ``masks/0001.png``)."""
    images, masks = Path(images), Path(masks)
    for p in (images, masks):
        if not p.is_dir():
            raise FileNotFoundError(f"{p} is not a folder")
    ims, ms = _by_stem(images), _by_stem(masks, (".png",))
    return [(ims[s], ms[s] if s in ms else masks / f"{s}.png") for s in ims]  # a missing mask is counted later


def cityscapes_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_labelIds.png``."""
    root = Path(root)
    images = root / "leftImg8bit" / split
    if not images.is_dir():
        raise FileNotFoundError(f"{root} has no leftImg8bit/{split}/ (the Cityscapes layout)")
    out = []
    for im in sorted(images.glob("*/*_leftImg8bit.png")):
        stem = im.name[: -len("_leftImg8bit.png")]
        out.append((im, root / "gtFine" / split / im.parent.name / f"{stem}_gtFine_labelIds.png"))
    return out


def voc_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """``JPEGImages/<id>.jpg`` with ``SegmentationClass/<id>.png`` for the ids of ``ImageSets/Segmentation/<split>.txt``."""
    root = Path(root)
    ids_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(f"{root} has no ImageSets/Segmentation/{split}.txt (the Pascal VOC layout)")
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    return [(root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids]


def fashion_scenes_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """A Fashion scenes split: ``<split>/images/*`` with its semantic ``<split>/masks/*.png`` (docs/detection_data.md)."""
    return folder_pairs(Path(root) / split / "images", Path(root) / split / "masks")


def weights_eval_transform(pp: Preprocessing) -> v2.Compose:
    """The evaluation transform weights' preprocessing asks of a segmenter: ``crop`` x ``crop``, or with ``keep_aspect``
    the shorter side to ``resize`` and no crop (torchvision's ``SemanticSegmentation(resize_size=...)``)."""
    return segmentation_eval_transform(pp.resize if pp.keep_aspect else pp.crop, pp.mean, pp.std, keep_aspect=pp.keep_aspect)


def segmentation_train_transform(
    size: int, mean: Sequence[float], std: Sequence[float], *, scale: tuple[float, float] = (0.5, 2.0), hflip: float = 0.5
) -> v2.Compose:
    """DeepLab-style augmentation: random scale, crop ``size`` (masks padded with 255), flip, photometric, normalise."""
    fill = {tv_tensors.Image: tuple(round(255 * m) for m in mean), tv_tensors.Mask: IGNORE}
    lo, hi = int(size * scale[0]), int(size * scale[1])  # the shorter side, drawn in [lo, hi]
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResize(lo, hi + 1, antialias=True) if hi > lo else v2.Resize(lo, antialias=True),
            v2.RandomCrop(size, pad_if_needed=True, fill=fill),  # type: ignore[arg-type]
            v2.RandomHorizontalFlip(hflip),
            v2.RandomPhotometricDistort(p=0.5),
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )


def segmentation_eval_transform(size: int | None, mean: Sequence[float], std: Sequence[float], *, keep_aspect: bool = False) -> v2.Compose:
    """Evaluation: resize to ``size`` x ``size`` (``keep_aspect``: the shorter side to ``size``; masks with nearest
    neighbours; None keeps the native size), normalise."""
    resize = [v2.Resize(size if keep_aspect else (size, size), antialias=True)] if size is not None else []
    return v2.Compose(
        [v2.ToImage(), *resize, v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True), v2.Normalize(list(mean), list(std))]
    )
