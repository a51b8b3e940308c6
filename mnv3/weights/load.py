"""Converting torchvision / timm / Keras checkpoints: library names, default metadata, mnv3 -> torchvision.

Converted weights compute the source library's logits only under that library's conventions
(:data:`LIBRARY_PRESETS`). Loading any source goes through :mod:`mnv3.weights.resolve`.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from mnv3.models.registry import get_variant
from mnv3.spec.conventions import Preset
from mnv3.utils.atomic import atomic_write_bytes
from mnv3.utils.preprocessing import INCEPTION, Preprocessing
from mnv3.weights.categories import CategorySet
from mnv3.weights.checkpoint import read_state_dict
from mnv3.weights.convert.common import LIBRARY_PRESETS, Library, Mapped
from mnv3.weights.convert.keras import keras_to_mnv3
from mnv3.weights.convert.timm import timm_to_mnv3
from mnv3.weights.convert.torchvision import mnv3_to_torchvision, torchvision_to_mnv3
from mnv3.weights.io import WeightsMeta
from mnv3.weights.keras_file import read_keras_weights
from mnv3.weights.named import SSDLITE_320, TV_SEGMENTATION_520, WeightsEntry

# The source libraries' own model names -> (registered mnv3 name, preset). Explicit, no pattern matching.
SOURCE_NAMES: dict[Library, dict[str, tuple[str, Preset]]] = {
    Library.TORCHVISION: {
        "mobilenet_v3_large": ("mobilenetv3_large_100", Preset.TORCHVISION),
        "mobilenet_v3_small": ("mobilenetv3_small_100", Preset.TORCHVISION),
    },
    Library.TIMM: {
        "mobilenetv3_large_075": ("mobilenetv3_large_075", Preset.TIMM),
        "mobilenetv3_large_100": ("mobilenetv3_large_100", Preset.TIMM),
        "mobilenetv3_small_050": ("mobilenetv3_small_050", Preset.TIMM),
        "mobilenetv3_small_075": ("mobilenetv3_small_075", Preset.TIMM),
        "mobilenetv3_small_100": ("mobilenetv3_small_100", Preset.TIMM),
        "tf_mobilenetv3_large_075": ("mobilenetv3_large_075", Preset.PAPER),
        "tf_mobilenetv3_large_100": ("mobilenetv3_large_100", Preset.PAPER),
        "tf_mobilenetv3_large_minimal_100": ("mobilenetv3_large_minimal_100", Preset.PAPER),
        "tf_mobilenetv3_small_075": ("mobilenetv3_small_075", Preset.PAPER),
        "tf_mobilenetv3_small_100": ("mobilenetv3_small_100", Preset.PAPER),
        "tf_mobilenetv3_small_minimal_100": ("mobilenetv3_small_minimal_100", Preset.PAPER),
    },
    Library.KERAS: {},
}

# What each library's ImageNet weights expect when no named entry says more (each library's published transforms; docs/weights.md).
DEFAULT_PREPROCESSING: dict[tuple[Library, Preset], Preprocessing] = {
    (Library.TORCHVISION, Preset.TORCHVISION): Preprocessing(),
    (Library.TIMM, Preset.TIMM): Preprocessing(interpolation="bicubic"),
    (Library.TIMM, Preset.PAPER): INCEPTION,
    (Library.KERAS, Preset.KERAS): INCEPTION,
}


def resolve_model(library: Library | str, name: str, preset: Preset | str | None = None) -> tuple[str, Preset]:
    """(registered mnv3 name, preset) for a model named the mnv3 way or the source library's way."""
    library = Library(library)
    if name in SOURCE_NAMES[library]:
        mnv3_name, default = SOURCE_NAMES[library][name]
    else:
        get_variant(name)  # raises with close matches for an unknown name
        mnv3_name, default = name, LIBRARY_PRESETS[library][0]
    chosen = Preset(preset) if preset is not None else default
    if chosen not in LIBRARY_PRESETS[library]:
        valid = [p.value for p in LIBRARY_PRESETS[library]]
        raise ValueError(f"{library.value} weights compute their logits only under preset {valid}, not {chosen.value!r}")
    return mnv3_name, chosen


def map_file(path: str | Path, library: Library | str) -> Mapped:
    """Read a checkpoint of ``library`` and rename its tensors to mnv3 keys."""
    library = Library(library)
    if library is Library.KERAS:
        return keras_to_mnv3(read_keras_weights(path))
    return map_state(read_state_dict(path), library)


def map_state(state: dict[str, torch.Tensor], library: Library | str) -> Mapped:
    """A torchvision / timm state dict already read from its file, renamed to mnv3 keys."""
    library = Library(library)
    if library is Library.KERAS:
        raise ValueError("Keras weights are read from their file: use map_file")
    return torchvision_to_mnv3(state) if library is Library.TORCHVISION else timm_to_mnv3(state)


# torchvision's SSDLite (models/detection/ssdlite.py): images resized to 320x320, mapped from [0, 1] to [-1, 1].
DETECTION_PREPROCESSING = SSDLITE_320


def default_meta(
    library: Library, preset: Preset, num_classes: int, source: str, *, detection: bool = False, segmentation: bool = False
) -> WeightsMeta:
    """Metadata for converted weights: ImageNet classifiers' preprocessing and classes, COCO's for a detector,
    torchvision's segmentation transform (and VOC's classes and colours, for 21 classes) for a segmenter."""
    from mnv3.weights.imagenet import imagenet_categories

    if detection:
        coco = CategorySet.COCO.names()
        return WeightsMeta(preprocessing=DETECTION_PREPROCESSING, categories=coco if num_classes == len(coco) else [], source=source)
    if segmentation:
        voc = CategorySet.VOC if num_classes == len(CategorySet.VOC.names()) else CategorySet.NONE
        return WeightsMeta(preprocessing=TV_SEGMENTATION_520, categories=voc.names(), palette=voc.palette(), source=source)
    return WeightsMeta(
        preprocessing=DEFAULT_PREPROCESSING[(library, preset)],
        categories=imagenet_categories() if num_classes == 1000 else [],
        source=source,
    )


def entry_meta(entry: WeightsEntry) -> WeightsMeta:
    """The metadata of a named entry in mnv3's file form."""
    return WeightsMeta(
        preprocessing=entry.preprocessing,
        categories=entry.categories,
        palette=entry.palette,
        metrics={m.name: {"value": m.value, "dataset": m.dataset, "source": m.source} for m in entry.metrics},
        recipe={"url": entry.recipe} if entry.recipe else {},
        source=f"{entry.name} <{entry.url}>",
    )


def save_torchvision(model: nn.Module, path: str | Path) -> Path:
    """Write the model's weights as a torchvision ``mobilenet_v3_*`` state dict (``torch.save``), atomically."""
    buf = io.BytesIO()
    torch.save(mnv3_to_torchvision(model), buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
