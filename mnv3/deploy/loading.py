"""The network ``mnv3 export`` / ``mnv3 bench`` work on: a registered name, optionally with a weights file."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from mnv3.utils.preprocessing import IMAGENET, Preprocessing
from mnv3.weights.io import WeightsMeta


class RandomWeightsWarning(UserWarning):
    """A model is exported or timed with random weights (fine for latency, meaningless for accuracy)."""


def _mnv3_spec_name(path: Path) -> str | None:
    """The spec name stored in an mnv3 safetensors file, or None for any other file."""
    from mnv3.weights.checkpoint import FileFormat, detect_format
    from mnv3.weights.io import SPEC_KEY, read_weights

    if detect_format(path) is not FileFormat.MNV3:
        return None
    _, header = read_weights(path)
    return json.loads(header[SPEC_KEY])["name"] if SPEC_KEY in header else None


def load_model(name: str, weights: str | Path | None = None, **create_kwargs: Any) -> tuple[nn.Module, WeightsMeta | None]:
    """(model in eval mode, weights metadata or None).

    An mnv3 weights file rebuilds its own network (it carries its spec); it must be of the
    variant ``name`` asks for. Other checkpoints (torchvision / timm / Keras) load through
    ``create_model(name, weights=...)``. Without weights the model is randomly initialised and a
    :class:`RandomWeightsWarning` is issued.
    """
    from mnv3.models.registry import create_model

    if weights is None:
        warnings.warn(
            f"no --weights given: {name} is randomly initialised (fine for latency and graph checks, meaningless predictions)",
            RandomWeightsWarning,
            stacklevel=2,
        )
        return create_model(name, **create_kwargs).eval(), None
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    stored = _mnv3_spec_name(path)
    if stored is not None:
        from mnv3.weights.io import model_from_file

        if Path(name).suffix not in (".json", ".yaml", ".yml") and stored != name:
            raise ValueError(
                f"{path} holds weights of {stored}, not {name}; run with MODEL {stored} (or give the weights of {name})"
            )
        model, meta = model_from_file(path)
        return model.eval(), meta
    model = create_model(name, weights=str(path), **create_kwargs)
    return model.eval(), getattr(model, "weights_meta", None)


def preprocessing_for(meta: WeightsMeta | None, resolution: int, in_chans: int) -> Preprocessing:
    """The weights' preprocessing at ``resolution`` (ImageNet's when no weights are given)."""
    pp = meta.preprocessing if meta is not None else IMAGENET
    if pp.crop != resolution:
        pp = dataclasses.replace(pp, resize=round(resolution * pp.resize / pp.crop), crop=resolution)
    if len(pp.mean) != in_chans:
        pp = dataclasses.replace(pp, mean=(sum(pp.mean) / len(pp.mean),) * in_chans, std=(sum(pp.std) / len(pp.std),) * in_chans)
    return pp
