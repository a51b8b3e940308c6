"""Read checkpoint files of any supported library and tell which library wrote them.

``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` are read with ``torch.load(weights_only=True)`` (no pickled
code runs); ``.safetensors`` with safetensors; Keras ``.h5`` / ``.weights.h5`` / ``.keras`` with h5py.
The library is recognised by one marker key per layout, never by the file name.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import torch

from mnv3.utils.torchfile import load_torch_file
from mnv3.weights.convert import timm as timm_convert
from mnv3.weights.convert import torchvision as tv_convert
from mnv3.weights.convert.common import Library
from mnv3.weights.keras_file import KERAS_SUFFIXES

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# training checkpoints wrap the state dict; these are the wrappers' keys, tried in this order
_WRAPPER_KEYS = ("state_dict", "model", "module")
MNV3_MARKER = "stem.conv.weight"


class FileFormat(str, Enum):
    """Who wrote a weights file: mnv3 itself or one of the converted libraries."""

    MNV3 = "mnv3"
    TORCHVISION = Library.TORCHVISION.value
    TIMM = Library.TIMM.value
    KERAS = Library.KERAS.value


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} dict from a PyTorch or safetensors file, unwrapped and without 'module.'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from mnv3.weights.io import read_weights

        return read_weights(path)[0]
    if path.suffix not in TORCH_SUFFIXES:
        raise ValueError(f"{path}: unknown checkpoint type {path.suffix!r}; expected one of {[*TORCH_SUFFIXES, '.safetensors', *KERAS_SUFFIXES]}")
    obj = load_torch_file(path, "checkpoint")  # weights_only=True; clear errors for unsafe, truncated or foreign files
    return unwrap_state(obj, path)


def unwrap_state(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict inside what ``torch.load`` returned for ``path`` (wrappers and 'module.' removed)."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = dict(obj)
    elif isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{path} holds no state dict: top-level keys {list(obj)[:8]}; expected tensors or one of {list(_WRAPPER_KEYS)}")
        state = unwrap_state(inner, path)
    else:
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    odd = [k for k in state if not isinstance(k, str)]
    if odd:
        raise ValueError(f"{path} is not a state dict: its keys must be tensor names, found {odd[:3]!r}")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def is_keras_file(path: str | Path) -> bool:
    """Keras files are told apart by their container: HDF5 (.h5) or a .keras zip."""
    return Path(path).suffix in KERAS_SUFFIXES


def detect_format(path: str | Path, state: dict[str, torch.Tensor] | None = None) -> FileFormat:
    """Which library wrote the file (mnv3: spec in its safetensors header or mnv3 keys), from ``state`` if already read."""
    path = Path(path)
    if is_keras_file(path):
        return FileFormat.KERAS
    if state is None and path.suffix == ".safetensors":
        from mnv3.weights.io import SPEC_KEY, read_weights

        tensors, header = read_weights(path)
        if SPEC_KEY in header:
            return FileFormat.MNV3
        state = tensors
    elif state is None:
        state = read_state_dict(path)
    for marker, fmt in (
        (MNV3_MARKER, FileFormat.MNV3),
        (tv_convert.MARKER, FileFormat.TORCHVISION),
        (tv_convert.SSDLITE_MARKER, FileFormat.TORCHVISION),
        (tv_convert.LRASPP_MARKER, FileFormat.TORCHVISION),
        (timm_convert.MARKER, FileFormat.TIMM),
    ):
        if marker in state:
            return fmt
    raise ValueError(f"{path}: not a MobileNetV3 checkpoint of mnv3, torchvision, timm or Keras (first keys: {list(state)[:4]})")
