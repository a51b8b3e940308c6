"""mnv3's own weights format: safetensors with the spec and metadata in the header.

A file written by :func:`save_weights` rebuilds its network with no other input
(:func:`model_from_file`), and carries the preprocessing, category names, metrics and recipe
that ``mnv3 predict`` and ``mnv3 eval`` use. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnv3.spec.serialize import spec_from_dict, spec_to_dict

SPEC_KEY = "mnv3.spec"
META_KEY = "mnv3.meta"


@dataclass(frozen=True)
class Preprocessing:
    """What the weights expect: resize / crop, interpolation, and normalisation.

    ``mean``/``std`` are in [0, 1] pixel units; Keras' [-1, 1] scaling is mean 0.5, std 0.5.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    grayscale: bool = False  # convert input images to one channel (Fashion-MNIST models)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)


IMAGENET = Preprocessing()
INCEPTION = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # TF / Keras [-1, 1] scaling


@dataclass
class WeightsMeta:
    """Metadata stored next to the tensors."""

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    categories: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    source: str = ""

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
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


def model_from_file(path: str | Path) -> tuple[nn.Module, WeightsMeta]:
    """Rebuild the network stored in an mnv3 safetensors file and load its weights."""
    from mnv3.models.mobilenetv3 import MobileNetV3

    tensors, header = read_weights(path)
    if SPEC_KEY not in header:
        raise ValueError(f"{path} has no mnv3 spec in its header; load it with create_model(NAME, weights={str(path)!r})")
    model = MobileNetV3(spec_from_dict(json.loads(header[SPEC_KEY])))
    model.load_state_dict(tensors)
    meta = WeightsMeta.from_json(header[META_KEY]) if META_KEY in header else WeightsMeta()
    return model, meta
