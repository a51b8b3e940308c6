"""Input data for export: calibration images (a folder or Fashion-MNIST) and labelled evaluation sets.

Images go through the weights' own preprocessing (:class:`~mnv3.weights.io.Preprocessing`), so
int8 ranges are calibrated on what the network sees in use. ``fashion-mnist`` names the dataset
``mnv3 train`` uses (its train split calibrates, its test split evaluates).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mnv3.data.images import IMAGE_EXTENSIONS
from mnv3.utils.preprocessing import Preprocessing

FASHION_MNIST = "fashion-mnist"


@dataclass
class LabelledSet:
    """Preprocessed images (N, C, H, W) float32 with integer labels, small enough to hold in memory."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str


def _transform(pp: Preprocessing):
    from mnv3.data.transforms import eval_transform

    return eval_transform(pp)


def _fashion(split: str, pp: Preprocessing, in_chans: int, limit: int | None, data_dir: str | None) -> LabelledSet:
    from mnv3.data import fashion_mnist as fm
    from mnv3.data.datasets import TensorImageDataset

    images, labels = fm.load_split(split, data_dir)
    if limit is not None:
        # a class-balanced prefix: stride through the set rather than taking its first items
        idx = torch.linspace(0, len(images) - 1, min(limit, len(images))).round().long()
        images, labels = images[idx], labels[idx]
    ds = TensorImageDataset(images, labels, fm.CLASSES, channels=in_chans)
    t = _transform(pp)
    xs = torch.stack([t(ds[i][0]) for i in range(len(ds))])
    return LabelledSet(xs, labels.clone(), f"Fashion-MNIST {split} ({len(ds)} images)")


def _image_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


def calibration_images(
    source: str | Path, pp: Preprocessing, in_chans: int, limit: int = 128, data_dir: str | None = None
) -> torch.Tensor:
    """Up to ``limit`` preprocessed calibration images (N, C, H, W) from a folder (searched recursively) or Fashion-MNIST."""
    if limit < 1:
        raise ValueError(f"the number of calibration images must be >= 1, got {limit}")
    if str(source) == FASHION_MNIST:
        return _fashion("train", pp, in_chans, limit, data_dir).images
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"calibration folder {str(root)!r} does not exist (give a folder of images or {FASHION_MNIST!r})")
    files = _image_files(root)
    if not files:
        raise ValueError(f"calibration folder {root} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)} recursively)")
    from mnv3.data.images import open_image

    step = max(1, len(files) // limit)
    t = _transform(pp)
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
    """A labelled evaluation set: Fashion-MNIST's test split, or an ImageFolder-layout folder (root/<class>/<image>).

    ``classes`` (the weights' category names) fixes which label each class folder gets.
    """
    if str(source) == FASHION_MNIST:
        return _fashion("test", pp, in_chans, limit, data_dir)
    from mnv3.data.folder import FolderDataset, scan_folder

    index = scan_folder(source, classes=classes or None, verify="header")
    ds = FolderDataset(index, grayscale=in_chans == 1)
    n = len(ds) if limit is None else min(limit, len(ds))
    t = _transform(pp)
    xs, ys = [], []
    for i in range(n):
        img, y = ds[i]
        xs.append(t(img))
        ys.append(y)
    return LabelledSet(torch.stack(xs), torch.tensor(ys), f"{source} ({n} images)")
