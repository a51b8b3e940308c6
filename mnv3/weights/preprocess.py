"""The input pipeline a set of weights expects, built from its :class:`Preprocessing` metadata.

Uses ``torchvision.transforms.v2``: (grayscale), resize of the shorter side, center crop, [0, 1]
float, normalise. Keras' in-model ``Rescaling(1/127.5, -1)`` is mean = std = 0.5 here.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from mnv3.utils.preprocessing import Preprocessing

_INTERPOLATIONS = {m.value: m for m in (InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)}


def build_transform(p: Preprocessing) -> T.Compose:
    """PIL image (or uint8 tensor) -> normalised float tensor (C, crop, crop), as the weights expect."""
    if p.interpolation not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {p.interpolation!r}; choose one of {sorted(_INTERPOLATIONS)}")
    channels = 1 if p.grayscale else 3
    if len(p.mean) != channels or len(p.std) != channels:
        raise ValueError(f"preprocessing has {len(p.mean)} mean / {len(p.std)} std values for {channels}-channel input")
    steps: list[T.Transform] = [T.Grayscale(1)] if p.grayscale else []
    steps += [
        T.Resize(p.resize, interpolation=_INTERPOLATIONS[p.interpolation], antialias=True),
        T.CenterCrop(p.crop),
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(list(p.mean), list(p.std)),
    ]
    return T.Compose(steps)
