"""Box-aware detection augmentation, all torchvision.transforms.v2 (https://pytorch.org/vision/stable/transforms.html).

Training is SSD's recipe (Liu et al. 2016, used for SSDLite in paper §6.3), as in torchvision's
detection references: photometric distortion, zoom out (expand onto the mean colour), IoU crop,
horizontal flip; then a resize to the model's square resolution, SanitizeBoundingBoxes (drops the
boxes the crop marked or squeezed to nothing, with their labels and masks), [0, 1] and Normalize.
Each takes ``(image, target)`` as a reader gives it and returns the same structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def per_box_tensors(inputs: Any) -> tuple[torch.Tensor, ...]:
    """SanitizeBoundingBoxes' labels_getter: the target's ``labels``, and its ``iscrowd`` where present, dropped with their boxes."""
    target = inputs[1] if isinstance(inputs, (tuple, list)) else inputs
    return tuple(target[k] for k in ("labels", "iscrowd") if k in target)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def _check(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"detection images are RGB: give 3 mean and 3 std values, got {list(mean)} and {list(std)}")


def detection_train_transform(
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    photometric: float = 0.5,
    zoom_out: float = 0.5,
    max_zoom: float = 4.0,
    hflip: float = 0.5,
) -> v2.Compose:
    """SSD training augmentation: RandomPhotometricDistort, RandomZoomOut, RandomIoUCrop, flip, Resize, SanitizeBoundingBoxes, normalise."""
    _check(mean, std)
    fill = {tv_tensors.Image: tuple(round(255 * m) for m in mean), "others": 0}  # uint8 image until ToDtype
    t: list[v2.Transform] = [v2.ToImage()]
    if photometric > 0:
        t.append(v2.RandomPhotometricDistort(p=photometric))
    if zoom_out > 0:
        t.append(v2.RandomZoomOut(fill=fill, side_range=(1.0, max_zoom), p=zoom_out))
    t.append(v2.RandomIoUCrop())
    if hflip > 0:
        t.append(v2.RandomHorizontalFlip(hflip))
    t += [
        v2.Resize(_size(size), antialias=True),
        v2.SanitizeBoundingBoxes(labels_getter=per_box_tensors),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]
    return v2.Compose(t)


def detection_eval_transform(size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Evaluation: Resize to the model's resolution, [0, 1], Normalize; boxes follow the resize."""
    _check(mean, std)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(_size(size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
