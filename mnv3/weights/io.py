"""mnv3's own weights format: safetensors with the spec and metadata in the header.

A file written by :func:`save_weights` rebuilds its network with no other input
(:func:`mnv3.weights.model_from_file`), and carries the preprocessing, category names, metrics and recipe
that ``mnv3 predict`` and ``mnv3 eval`` use. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnv3.spec.serialize import spec_to_dict
from mnv3.utils.atomic import atomic_write_bytes
from mnv3.utils.preprocessing import Preprocessing

SPEC_KEY = "mnv3.spec"
META_KEY = "mnv3.meta"


@dataclass
class WeightsMeta:
    """Metadata stored next to the tensors."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    categories: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    palette: list[list[int]] = field(default_factory=list)  # segmenters: an (R, G, B) colour per class for drawings

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> WeightsMeta:
        d = json.loads(text)
        return cls(
            preprocessing=Preprocessing.from_dict(d.get("preprocessing", {})),
            categories=list(d.get("categories", [])),
            metrics=dict(d.get("metrics", {})),
            recipe=dict(d.get("recipe", {})),
            source=str(d.get("source", "")),
            palette=[[int(c) for c in rgb] for rgb in d.get("palette", [])],
        )


def save_weights(model: nn.Module, path: str | Path, meta: WeightsMeta | None = None) -> Path:
    """Save an mnv3 model's state dict, spec and metadata as one safetensors file, atomically."""
    from safetensors.torch import save

    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("save_weights takes an mnv3 model (it stores the model's spec); got a model without .spec")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {SPEC_KEY: json.dumps(spec_to_dict(spec)), META_KEY: (meta or WeightsMeta()).to_json()}
    path = Path(path)
    atomic_write_bytes(path, save(tensors, metadata=header))
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw header metadata of a safetensors file, with a clear error for a broken file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        return load_file(str(path)), header
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
