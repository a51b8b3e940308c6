"""Checkpoints that survive interruptions: atomic writes, full training state, safe loading.

A checkpoint is serialised in memory, then written with :func:`mnv3.weights.io.atomic_write_bytes`
(temporary file in the same folder, fsync, rename, fsync of the folder), so a process killed at
any moment leaves either the previous file or the new one, never a torn file. Only tensors and
plain Python values are stored, so loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnv3.utils.atomic import atomic_write_bytes

FORMAT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Serialise ``state`` and write it atomically to ``path``."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


class Checkpoint(dict):
    """A loaded training checkpoint: a dict whose missing entries are a ValueError naming the file.

    Callers index it directly (``ckpt["config"]``); a foreign or hand-made ``.pt`` that lacks an entry
    then fails with one clear line instead of a KeyError traceback.
    """

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        super().__init__(data)
        self.path = path

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"{self.path} has no {key!r} entry: it is not a complete mnv3 training checkpoint")


# entries a checkpoint written by mnv3 train holds, with their types (checked when present)
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {"config": (dict,), "model": (dict,), "classes": (list, tuple), "step": (int,)}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint onto the CPU; a missing, torn, unsafe or foreign file is a clear ValueError."""
    from mnv3.utils.torchfile import UnsafePickleError, load_torch_file

    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (pass a run folder or a .pt file)")
    try:
        state = load_torch_file(path, "checkpoint")  # weights_only=True: refuses pickled objects
    except UnsafePickleError:
        raise
    except ValueError as e:  # truncated, corrupt or not a torch file
        raise ValueError(f"{e}; use the run's best.pt or start again") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        kind = f"a {type(state).__name__}" if not isinstance(state, dict) else f"a dict with keys {list(state)[:6]}"
        raise ValueError(f"{path} is not an mnv3 training checkpoint (format {FORMAT_VERSION}): it holds {kind}")
    for key, types in _ENTRY_TYPES.items():
        if key in state and (not isinstance(state[key], types) or (key == "step" and isinstance(state[key], bool))):
            raise ValueError(f"{path}: entry {key!r} is of type {type(state[key]).__name__}, not what mnv3 train writes; the checkpoint is damaged")
    if "config" in state:
        from mnv3.train.config import config_from_dict

        try:
            config_from_dict(state["config"])
        except ValueError as e:
            raise ValueError(f"{path}: its saved config is not valid for this mnv3: {e}") from None
    return Checkpoint(state, path)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files left by writers that were killed (their process is gone)."""
    removed = []
    for p in Path(folder).glob(".*.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            alive = pid != os.getpid()
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
