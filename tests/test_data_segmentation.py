"""Segmentation data: Fashion scenes' semantic masks, the Cityscapes and Pascal VOC layouts, image + mask folders;
bad pairs skipped and counted (strict lists them); mask-aware v2 augmentation keeps masks aligned with images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnv3.data import fashion_mnist as fm
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

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def _rgb(h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_fashion_scenes_masks_pair_with_their_images(tmp_path: Path) -> None:
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    from mnv3.data.detection import generate_fashion_scenes

    root = generate_fashion_scenes(tmp_path / "scenes", train=3, test=2, seed=1, progress=False)
    ds = SegmentationPairs(fashion_scenes_pairs(root, "test"), FASHION_SCENES_CLASSES, transforms=segmentation_eval_transform(None, MEAN, STD))
    assert len(ds) == 2
    image, mask = ds[0]
    assert image.shape == (3, 320, 320) and mask.shape == (320, 320) and mask.dtype == torch.int64
    values = set(mask.unique().tolist())
    assert values <= {*range(11), 255} and 0 in values and 255 in values and len(values - {0, 255}) >= 1


def test_cityscapes_label_ids_map_to_the_19_train_ids(tmp_path: Path) -> None:
    ids = np.array([[7, 26, 0, 33], [24, 1, 8, 255]], dtype=np.uint8).repeat(4, 0).repeat(4, 1)  # 8 x 16
    for split in ("train", "val"):
        _png(tmp_path / "leftImg8bit" / split / "aachen" / "aachen_000000_000019_leftImg8bit.png", _rgb(8, 16))
        _png(tmp_path / "gtFine" / split / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", ids)
    ds = SegmentationPairs(cityscapes_pairs(tmp_path, "val"), CITYSCAPES_CLASSES, label_map=cityscapes_label_map())
    _, mask = ds[0]
    assert mask[0, ::4].tolist() == [0, 13, 255, 18] and mask[4, ::4].tolist() == [11, 255, 1, 255]


def test_voc_palette_masks_give_class_indices(tmp_path: Path) -> None:
    m = np.zeros((16, 24), dtype=np.uint8)
    m[4:12, 4:12], m[3, :] = 15, 255  # a person and VOC's 255 border
    img = Image.fromarray(m, mode="P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, (3 * i) % 256)])
    (tmp_path / "SegmentationClass").mkdir(parents=True)
    img.save(tmp_path / "SegmentationClass" / "2007_000032.png")
    _png(tmp_path / "JPEGImages" / "x.png", _rgb())
    Image.fromarray(_rgb()).save(tmp_path / "JPEGImages" / "2007_000032.jpg")
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n")
    _, mask = SegmentationPairs(voc_pairs(tmp_path, "val"), VOC_CLASSES)[0]
    assert set(mask.unique().tolist()) == {0, 15, 255} and int(mask[8, 8]) == 15


def test_bad_pairs_are_skipped_and_counted_or_listed_with_strict(tmp_path: Path) -> None:
    good = np.zeros((16, 24), dtype=np.uint8)
    _png(tmp_path / "img" / "a.png", _rgb())
    _png(tmp_path / "masks" / "a.png", good)
    _png(tmp_path / "img" / "b.png", _rgb())
    _png(tmp_path / "masks" / "b.png", np.zeros((8, 8), dtype=np.uint8))  # size differs
    _png(tmp_path / "img" / "c.png", _rgb())
    _png(tmp_path / "masks" / "c.png", np.full((16, 24), 50, dtype=np.uint8))  # unknown label
    _png(tmp_path / "img" / "d.png", _rgb())  # no mask
    (tmp_path / "img" / "e.png").write_bytes(b"not a png")
    _png(tmp_path / "masks" / "e.png", good)
    pairs = folder_pairs(tmp_path / "img", tmp_path / "masks")
    with pytest.warns(UserWarning, match=r"skipped 4 item\(s\)"):
        ds = SegmentationPairs(pairs, ["bg", "a", "b"])
    assert len(ds) == 1 and {s.kind for s in ds.report.skipped} == {
        "mask size differs from its image", "unknown label value", "missing mask file", "unreadable file"
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"4 bad .*unknown label value.*strict"):
        SegmentationPairs(pairs, ["bg", "a", "b"], strict=True)
    with pytest.raises(ValueError, match="no image / mask pairs"):
        SegmentationPairs([], ["bg", "a"])


def test_train_augmentation_moves_masks_with_images(tmp_path: Path) -> None:
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[:, :8] = 1  # a stripe on the left
    _png(tmp_path / "img" / "a.png", _rgb(32, 32))
    _png(tmp_path / "masks" / "a.png", mask)
    flip = segmentation_train_transform(32, MEAN, STD, scale=(1.0, 1.0), hflip=1.0)
    ds = SegmentationPairs(folder_pairs(tmp_path / "img", tmp_path / "masks"), ["bg", "stripe"], transforms=flip, seed=0)
    image, m = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert torch.equal(m, torch.from_numpy(mask[:, ::-1].copy()).long())  # flipped together
    small = segmentation_train_transform(64, MEAN, STD, scale=(0.5, 0.5))  # 32 px image scaled to 32, padded to 64
    ds.transforms = small
    image, m = ds[0]
    assert m.shape == (64, 64) and (m == 255).sum() >= 64 * 64 - 32 * 32  # the padding is ignored, not background
    assert ds[0][1].tolist() == ds[0][1].tolist()  # seeded: the same sample twice
