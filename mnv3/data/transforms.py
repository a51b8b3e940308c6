"""Training and evaluation transforms (torchvision.transforms.v2) and batch-level mixup / cutmix.

Training follows Inception-style preprocessing (random resized crop, flip; paper §6.1.1) with
optional AutoAugment / RandAugment / TrivialAugment and random erasing; evaluation is resize then
centre crop, read from the same :class:`~mnv3.utils.preprocessing.Preprocessing` that is saved with the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from mnv3.utils.preprocessing import Preprocessing

CROPS = ("random_resized", "pad", "none")
AUTO_AUGMENTS = (None, "autoaugment", "randaugment", "trivialaugment")
INTERPOLATIONS = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC, "nearest": v2.InterpolationMode.NEAREST}


def interpolation_mode(name: str) -> v2.InterpolationMode:
    """torchvision's interpolation enum from its lower-case name."""
    if name not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; choose one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def train_transform(
    resolution: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    crop: str = "random_resized",
    crop_scale: Sequence[float] = (0.08, 1.0),
    crop_padding: int = 4,
    hflip: float = 0.5,
    auto_augment: str | None = None,
    randaugment_magnitude: int = 9,
    random_erasing: float = 0.0,
    interpolation: str = "bilinear",
) -> v2.Compose:
    """Per-sample training augmentation from a PIL image or a uint8 image tensor to a normalised float tensor."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose one of {CROPS}")
    if auto_augment not in AUTO_AUGMENTS:
        raise ValueError(f"unknown auto_augment {auto_augment!r}; choose one of {AUTO_AUGMENTS}")
    interp = interpolation_mode(interpolation)
    t: list[Callable] = [v2.ToImage()]
    if crop == "random_resized":
        t.append(v2.RandomResizedCrop(resolution, scale=tuple(crop_scale), interpolation=interp, antialias=True))
    else:
        t.append(v2.Resize((resolution, resolution), interpolation=interp, antialias=True))
        if crop == "pad" and crop_padding > 0:
            t.append(v2.RandomCrop(resolution, padding=crop_padding))
    if hflip > 0:
        t.append(v2.RandomHorizontalFlip(hflip))
    if auto_augment == "autoaugment":
        t.append(v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=interp))
    elif auto_augment == "randaugment":
        t.append(v2.RandAugment(num_ops=2, magnitude=randaugment_magnitude, interpolation=interp))
    elif auto_augment == "trivialaugment":
        t.append(v2.TrivialAugmentWide(interpolation=interp))
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if random_erasing > 0:
        t.append(v2.RandomErasing(random_erasing, value=0))
    t.append(v2.ToPureTensor())
    return v2.Compose(t)


def input_channels(pp: Preprocessing) -> int:
    """1 for grayscale preprocessing (``grayscale`` set, or a single mean value), else 3."""
    return 1 if pp.grayscale or len(pp.mean) == 1 else 3


def eval_transform(pp: Preprocessing) -> v2.Compose:
    """The one input pipeline for trained weights: (grayscale), resize the shorter side, centre crop (not with ``keep_aspect``), [0, 1], normalise.

    ``mnv3 predict``, ``mnv3 eval``, export calibration and training's validation all read images
    through this, so the same image gives the same pixels everywhere. Takes a PIL image or a uint8
    image tensor; Keras' in-model ``Rescaling(1/127.5, -1)`` is mean = std = 0.5 here.
    """
    interp = interpolation_mode(pp.interpolation)
    channels = input_channels(pp)
    if len(pp.mean) != channels or len(pp.std) != channels:
        raise ValueError(
            f"preprocessing has {len(pp.mean)} mean / {len(pp.std)} std values for {channels}-channel input "
            f"(grayscale={pp.grayscale}); give one value per channel"
        )
    steps: list[Callable] = [v2.ToImage()]
    if channels == 1:
        steps.append(v2.Grayscale(1))
    steps += [
        v2.Resize(pp.resize, interpolation=interp, antialias=True),
        *([] if pp.keep_aspect else [v2.CenterCrop(pp.crop)]),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(pp.mean), list(pp.std)),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def batch_mix(mixup: float, cutmix: float, num_classes: int) -> v2.Transform | None:
    """MixUp / CutMix on a whole batch (one of them, chosen at random when both are on); None when off."""
    ts: list[v2.Transform] = []
    if mixup > 0:
        ts.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
    if cutmix > 0:
        ts.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
    if not ts:
        return None
    return ts[0] if len(ts) == 1 else v2.RandomChoice(ts)
