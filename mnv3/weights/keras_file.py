"""Read Keras MobileNetV3 weight files with h5py (no Keras needed): the weighted layers, in order.

Three layouts exist:

- Keras 3 ``.weights.h5`` (and the ``model.weights.h5`` inside a ``.keras`` zip): groups
  ``layers/{class_name}[_{k}]/vars/{i}``, named by layer class with a counter in the model's layer
  order, variables in each layer's own order (Conv2D: kernel, bias; BatchNormalization: gamma, beta,
  moving_mean, moving_variance).
- legacy HDF5 (Keras 2 / tf.keras ``save_weights``, the files keras.applications downloads): an
  ordered ``layer_names`` attribute, one group per layer with ``weight_names`` (trainable first).

Both are reduced to three ordered streams (conv, depthwise, batch-norm layers), which is all the
MobileNetV3 walk in :mod:`mnv3.weights.convert.keras` needs.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import h5py

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


@dataclass(frozen=True)
class KerasLayer:
    """One weighted layer: a name to show in errors and its arrays by role."""

    name: str
    arrays: dict[str, np.ndarray]


@dataclass
class KerasWeights:
    """The weighted layers of a Keras model, split by layer class, each list in model order."""

    convs: list[KerasLayer] = field(default_factory=list)  # Conv2D: kernel (H, W, in, out) [+ bias]
    depthwise: list[KerasLayer] = field(default_factory=list)  # DepthwiseConv2D: kernel (H, W, C, 1)
    batchnorms: list[KerasLayer] = field(default_factory=list)  # gamma, beta, moving_mean, moving_variance


_BN_ROLES = ("gamma", "beta", "moving_mean", "moving_variance")
_KERAS3_CLASSES = {"conv2d": "convs", "depthwise_conv2d": "depthwise", "batch_normalization": "batchnorms"}
_KERAS3_NAME = re.compile(r"^(?P<cls>[a-z_0-9]+?)(?:_(?P<k>\d+))?$")


def _decode(values: object) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]  # type: ignore[union-attr]


def _array(item: object, where: str) -> np.ndarray:
    """An HDF5 dataset as an array; anything else (a group, a link) means the file is not a weights file."""
    import h5py

    if not isinstance(item, h5py.Dataset):
        raise ValueError(f"{where} is a {type(item).__name__}, not an array of weights")
    return np.asarray(item)


def _read_keras3(root: h5py.Group) -> KerasWeights:
    import h5py

    by_class: dict[str, list[tuple[int, str]]] = {}
    for name in root["layers"]:
        group = root["layers"][name]
        if "vars" not in group or len(group["vars"]) == 0:
            continue
        m = _KERAS3_NAME.match(name)
        cls = m.group("cls") if m else name
        if cls not in _KERAS3_CLASSES:
            raise ValueError(
                f"weighted Keras layer {name!r} is not a Conv2D, DepthwiseConv2D or BatchNormalization; "
                "this is not a keras.applications MobileNetV3Large/Small weights file"
            )
        by_class.setdefault(cls, []).append((int(m.group("k") or 0) if m else 0, name))
    out = KerasWeights()
    for cls, items in by_class.items():
        for _, name in sorted(items):
            variables = root["layers"][name]["vars"]
            if not isinstance(variables, h5py.Group):
                raise ValueError(f"Keras layer {name}: 'vars' is a {type(variables).__name__}, not a group of arrays")
            if not all(str(i).isdigit() for i in variables):
                raise ValueError(f"Keras layer {name} has variables {sorted(variables)}; Keras 3 numbers them 0, 1, ...")
            arrays = [_array(variables[i], f"{name}/vars/{i}") for i in sorted(variables, key=int)]
            if cls == "batch_normalization":
                if len(arrays) != 4:
                    raise ValueError(f"Keras layer {name} has {len(arrays)} variables; a BatchNormalization has 4")
                roles = dict(zip(_BN_ROLES, arrays, strict=True))
            else:
                roles = {"kernel": arrays[0], **({"bias": arrays[1]} if len(arrays) > 1 else {})}
            getattr(out, _KERAS3_CLASSES[cls]).append(KerasLayer(name, roles))
    return out


def _read_legacy(root: h5py.Group) -> KerasWeights:
    out = KerasWeights()
    for name in _decode(root.attrs["layer_names"]):
        group = root[name]
        weight_names = _decode(group.attrs.get("weight_names", []))
        if not weight_names:
            continue
        arrays = {w.split("/")[-1].split(":")[0]: _array(group[w], f"{name}/{w}") for w in weight_names}
        if set(arrays) == set(_BN_ROLES):
            out.batchnorms.append(KerasLayer(name, arrays))
        elif set(arrays) == {"depthwise_kernel"}:  # Keras 2 names it so
            out.depthwise.append(KerasLayer(name, {"kernel": arrays["depthwise_kernel"]}))
        elif "kernel" in arrays and set(arrays) <= {"kernel", "bias"}:
            k = arrays["kernel"]
            # Keras 3 writes a depthwise kernel as 'kernel' (H, W, C, 1); a MobileNetV3 Conv2D never has 1 output channel
            if k.ndim == 4 and k.shape[3] == 1 and "bias" not in arrays:
                out.depthwise.append(KerasLayer(name, {"kernel": k}))
            else:
                out.convs.append(KerasLayer(name, arrays))
        else:
            raise ValueError(f"Keras layer {name!r} holds {sorted(arrays)}; a MobileNetV3 has only Conv2D, DepthwiseConv2D and BatchNormalization weights")
    return out


def _read_h5(f: h5py.File) -> KerasWeights:
    if "layers" in f and "layer_names" not in f.attrs:
        return _read_keras3(f)
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" in root.attrs:
        return _read_legacy(root)
    raise ValueError("not a Keras weights file: no 'layers' group (Keras 3) and no 'layer_names' attribute (legacy HDF5)")


def read_keras_weights(path: str | Path) -> KerasWeights:
    """The weighted layers of a Keras ``.weights.h5``, legacy ``.h5`` or ``.keras`` file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not a Keras weights file; an interrupted download or copy?")
    source: str | io.BytesIO = str(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as z:
                if "model.weights.h5" not in z.namelist():
                    raise ValueError(f"{path} is a zip without model.weights.h5; not a Keras 3 .keras file")
                source = io.BytesIO(z.read("model.weights.h5"))
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"{path} is not a readable .keras file (a Keras 3 .keras is a zip archive; truncated or corrupt?): {e}") from None
    try:
        f = h5py.File(source, "r")
    except OSError as e:  # h5py: "file signature not found", "truncated file: eof = ..."
        reason = " ".join(str(e).split())
        raise ValueError(f"{path} is not a readable Keras weights file (not HDF5, or truncated or corrupt): {reason}") from None
    with f:
        try:
            return _read_h5(f)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        except OSError as e:  # a dataset whose bytes are missing
            raise ValueError(f"{path} is truncated or corrupt: reading it failed ({' '.join(str(e).split())})") from None
        except (KeyError, TypeError, AttributeError, IndexError) as e:  # an entry missing or of the wrong kind
            raise ValueError(
                f"{path} is an HDF5 file but not a keras.applications MobileNetV3 weights file "
                f"({type(e).__name__}: {' '.join(str(e).split())})"
            ) from None
