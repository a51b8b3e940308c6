"""The preprocessing ``mnv3 export`` / ``mnv3 bench`` feed a network at a given resolution."""

from __future__ import annotations

import dataclasses

from mnv3.utils.preprocessing import IMAGENET, Preprocessing
from mnv3.weights.io import WeightsMeta


def preprocessing_for(meta: WeightsMeta | None, resolution: int, in_chans: int) -> Preprocessing:
    """The weights' preprocessing at ``resolution`` (ImageNet's when no weights are given), for ``in_chans`` channels."""
    pp = meta.preprocessing if meta is not None else IMAGENET
    if pp.crop != resolution:
        pp = dataclasses.replace(pp, resize=round(resolution * pp.resize / pp.crop), crop=resolution)
    return pp.for_channels(in_chans)
