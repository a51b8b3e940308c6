"""Input data for export: calibration images (a folder or Fashion-MNIST) and labelled evaluation sets.

Images go through the weights' own preprocessing (:func:`mnv3.data.transforms.eval_transform`), so
int8 ranges are calibrated on what the network sees in use. ``fashion-mnist`` names the dataset
``mnv3 train`` uses (its train split calibrates, its test split evaluates); ``fashion-scenes`` the
detection / segmentation set's training images, for the same reason (the cached default set when
training made one, else just the scenes needed, generated once into the cache: scene ``i`` is the
same image in both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mnv3.data import fashion_mnist as fm
from mnv3.data.eval_sets import eval_set
from mnv3.data.images import IMAGE_EXTENSIONS
from mnv3.data.transforms import eval_transform, input_channels
from mnv3.utils.preprocessing import Preprocessing

FASHION_MNIST = fm.NAME
FASHION_SCENES = "fashion-scenes"


@dataclass
class LabelledSet:
    """Preprocessed images (N, C, H, W) float32 with integer labels, small enough to hold in memory."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str


def _check_channels(pp: Preprocessing, in_chans: int) -> None:
    if input_channels(pp) != in_chans:
        raise ValueError(f"preprocessing for {input_channels(pp)}-channel input given for a {in_chans}-channel model")


def _image_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def fashion_scenes_train_images(limit: int, data_dir: str | None = None) -> Path:
    """The folder of Fashion scenes training images (seed 0): the default cached set's if present, else ``limit`` scenes
    generated once. Training images, so that an int8 file's test-split accuracy is measured on images it never saw."""
    from mnv3.data.detection.scenes import ensure_fashion_scenes, fashion_scenes_dir, read_manifest

    default = fashion_scenes_dir()
    if read_manifest(default) is not None and (default / "train" / "images").is_dir():
        return default / "train" / "images"
    return ensure_fashion_scenes(train=limit, test=0, seed=0, data_dir=data_dir, progress=False) / "train" / "images"


def calibration_images(
    source: str | Path, pp: Preprocessing, in_chans: int, limit: int = 128, data_dir: str | None = None
) -> torch.Tensor:
    """Up to ``limit`` preprocessed calibration images (N, C, H, W): a folder (searched recursively), Fashion-MNIST or Fashion scenes."""
    if limit < 1:
        raise ValueError(f"the number of calibration images must be >= 1, got {limit}")
    _check_channels(pp, in_chans)
    if str(source) == FASHION_MNIST:
        return eval_set(FASHION_MNIST, pp, split="train", limit=limit, data_dir=data_dir).tensors()[0]
    root = fashion_scenes_train_images(limit, data_dir) if str(source) == FASHION_SCENES else Path(source)
    if not root.is_dir():
        raise FileNotFoundError(
            f"calibration folder {str(root)!r} does not exist (give a folder of images, {FASHION_MNIST!r} or {FASHION_SCENES!r})"
        )
    files = _image_files(root)
    if not files:
        raise ValueError(f"calibration folder {root} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)} recursively)")
    from mnv3.data.images import open_image

    step = max(1, len(files) // limit)
    t = eval_transform(pp)
    out = []
    for p in files[::step][:limit]:
        try:
            img = open_image(p, "L" if in_chans == 1 else "RGB")
        except (OSError, ValueError) as e:  # open_image names the file and the reason
            raise ValueError(f"calibration image {e}; remove it or fix it") from None
        out.append(t(img))
    return torch.stack(out)


def labelled_set(
    source: str | Path,
    pp: Preprocessing,
    in_chans: int,
    limit: int | None = None,
    data_dir: str | None = None,
    classes: list[str] | None = None,
) -> LabelledSet:
    """A labelled evaluation set in memory: Fashion-MNIST's test split, or an ImageFolder-layout folder.

    Built by :func:`mnv3.data.eval_sets.eval_set` (``classes``, the weights' category names, fixes
    which label each class folder gets; a limit spreads over every class).
    """
    _check_channels(pp, in_chans)
    es = eval_set(source, pp, split="test", categories=classes, limit=limit, data_dir=data_dir)
    images, labels = es.tensors()
    return LabelledSet(images, labels, es.name)
