"""The package face: ``mnv3.create_model`` builds a network and, given ``weights=``, loads them.

It joins the two layers that must not know each other: :mod:`mnv3.models` (networks from specs)
and :mod:`mnv3.weights` (which reads weights and builds through the models layer).
"""

from __future__ import annotations

import os
from typing import Any

from mnv3.models.mobilenetv3 import MobileNetV3
from mnv3.models.registry import create_model as build_model
from mnv3.spec.types import ModelSpec
from mnv3.weights.named import WeightsEntry
from mnv3.weights.resolve import load_model


def create_model(
    name: str | ModelSpec | os.PathLike,
    num_classes: int | None = None,
    *,
    weights: WeightsEntry | str | os.PathLike | None = None,
    **overrides: Any,
) -> MobileNetV3:
    """A network from a registered name (with overrides), a :class:`ModelSpec` or a spec file.

    ``weights=`` (a named entry, an mnv3 file, a torchvision / timm / Keras checkpoint, a run folder
    or a training checkpoint) is read by :func:`mnv3.weights.load_model`: when ``preset`` is not
    given the weights decide it; a preset or option that contradicts them is a clear error. Another
    ``num_classes`` / ``in_chans`` than the weights' starts a fine-tuning.
    """
    if weights is None:
        return build_model(name, num_classes, **overrides)
    preset = overrides.pop("preset", None)
    in_chans = overrides.pop("in_chans", None)
    return load_model(weights, model=name, preset=preset, num_classes=num_classes, in_chans=in_chans, **overrides)
