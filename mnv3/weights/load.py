"""Put weights into mnv3 models: named entries, mnv3 files, and torchvision / timm / Keras checkpoints.

``create_model(name, weights=...)`` calls :func:`load_weights_into`. Converted weights compute the
source library's logits only under that library's conventions, so loading checks the model's preset
(padding, BN eps) and its shapes, and says which ``create_model`` call would fit when they differ.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnv3.spec.conventions import Preset
from mnv3.spec.serialize import spec_from_dict
from mnv3.spec.types import ModelSpec
from mnv3.utils.atomic import atomic_write_bytes
from mnv3.utils.preprocessing import INCEPTION, Preprocessing
from mnv3.weights.checkpoint import FileFormat, detect_format, read_state_dict
from mnv3.weights.convert.common import LIBRARY_PRESETS, Library, Mapped, check_fits, expected_shapes, numerics_match
from mnv3.weights.convert.keras import keras_to_mnv3
from mnv3.weights.convert.timm import timm_to_mnv3
from mnv3.weights.convert.torchvision import mnv3_to_torchvision, torchvision_to_mnv3
from mnv3.weights.io import META_KEY, SPEC_KEY, WeightsMeta, read_weights
from mnv3.weights.keras_file import read_keras_weights
from mnv3.weights.named import WEIGHTS, WeightsEntry, get_weights

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

# What each library's ImageNet weights expect when no named entry says more (fact sheet §11).
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
        from mnv3.models.registry import get_variant

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
    state = read_state_dict(path)
    return torchvision_to_mnv3(state) if library is Library.TORCHVISION else timm_to_mnv3(state)


def default_meta(library: Library, preset: Preset, num_classes: int, source: str) -> WeightsMeta:
    """Metadata for converted ImageNet weights: the library's preprocessing and the ImageNet classes."""
    from mnv3.weights.imagenet import imagenet_categories

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
        metrics={m.name: {"value": m.value, "dataset": m.dataset, "source": m.source} for m in entry.metrics},
        recipe={"url": entry.recipe} if entry.recipe else {},
        source=f"{entry.name} <{entry.url}>",
    )


def convert_checkpoint(path: str | Path, library: Library | str, model: str, *, preset: Preset | str | None = None) -> tuple[nn.Module, WeightsMeta]:
    """An mnv3 model (eval mode) holding a torchvision / timm / Keras checkpoint, and its metadata."""
    from mnv3.models.mobilenetv3 import MobileNetV3
    from mnv3.models.registry import build_spec

    library = Library(library)
    name, preset = resolve_model(library, model, preset)
    mapped = map_file(path, library)
    spec = build_spec(name, preset=preset, num_classes=mapped.num_classes, in_chans=mapped.in_chans)
    check_fits(mapped, spec)
    net = MobileNetV3(spec)
    _load(net, mapped.tensors)
    net.eval()
    return net, default_meta(library, preset, mapped.num_classes, f"converted from {library.value} checkpoint {Path(path).name}")


def _load(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    dtype = next(model.parameters()).dtype
    ready = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    model.load_state_dict(ready, strict=True)


def _same_network(a: ModelSpec, b: ModelSpec) -> bool:
    """Equal up to the name, dropout and BN momentum (which do not change the weights' meaning)."""

    def key(s: ModelSpec) -> ModelSpec:
        return dataclasses.replace(
            s,
            name="_",
            head=dataclasses.replace(s.head, dropout=0.0),
            conventions=dataclasses.replace(s.conventions, bn_momentum=0.0),
        )

    return key(a) == key(b)


def _adapt_for_finetuning(model_spec: ModelSpec, source_spec: ModelSpec, tensors: dict[str, torch.Tensor], meta: WeightsMeta) -> None:
    """Let a model with another class count or a 1-channel input take the rest of the weights.

    Another class count: the classifier is not loaded (the model keeps its own, for fine-tuning).
    One input channel from RGB weights: the stem kernel is summed over its input channels, the usual
    grayscale adaptation (timm's ``adapt_input_conv``), and the preprocessing becomes grayscale with
    the channel-averaged mean / std: a starting point for fine-tuning, not the source's exact outputs.
    """
    if model_spec.num_classes != source_spec.num_classes:
        for p in ("weight", "bias"):
            tensors.pop(f"classifier.{p}", None)
        meta.categories = []
    if model_spec.in_chans != source_spec.in_chans:
        if (model_spec.in_chans, source_spec.in_chans) != (1, 3):
            raise ValueError(f"weights for {source_spec.in_chans}-channel input cannot be adapted to {model_spec.in_chans} channels (only RGB -> 1)")
        tensors["stem.conv.weight"] = tensors["stem.conv.weight"].sum(dim=1, keepdim=True)
        p = meta.preprocessing
        meta.preprocessing = dataclasses.replace(p, grayscale=True, mean=(sum(p.mean) / len(p.mean),), std=(sum(p.std) / len(p.std),))


def _io_like(spec: ModelSpec, model_spec: ModelSpec) -> ModelSpec:
    """``spec`` with the model's class count and input channels (the parts fine-tuning may change)."""
    return spec.replace(num_classes=model_spec.num_classes, in_chans=model_spec.in_chans)


def _load_partial_aware(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    dtype = next(model.parameters()).dtype
    ready = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in ready and not k.startswith("classifier.")]
    if missing:
        raise ValueError(f"internal error: weights lack {missing[:3]}")
    model.load_state_dict(ready, strict=False)


def _load_entry(model: nn.Module, entry: WeightsEntry, progress: bool) -> WeightsMeta:
    from mnv3.models.registry import build_spec
    from mnv3.weights.download import fetch

    wanted = build_spec(entry.model, preset=entry.preset, num_classes=entry.num_classes)
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    if not _same_network(spec, _io_like(wanted, spec)):
        raise ValueError(
            f"weights {entry.name!r} are for create_model({entry.model!r}, preset={entry.preset.value!r}); this model "
            f"({spec.name}) is a different network or uses other conventions. Use mnv3.weights.create_pretrained({entry.name!r}) "
            f"or create_model({entry.model!r}, preset={entry.preset.value!r}, weights={entry.name!r})."
        )
    path = fetch(entry, progress=progress)
    mapped = map_file(path, entry.library)
    check_fits(mapped, wanted)
    meta = entry_meta(entry)
    _adapt_for_finetuning(spec, wanted, mapped.tensors, meta)
    _load_partial_aware(model, mapped.tensors)
    return meta


def _load_mnv3_file(model: nn.Module, path: Path) -> WeightsMeta:
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    tensors, header = read_weights(path)
    meta = WeightsMeta.from_json(header[META_KEY]) if META_KEY in header else WeightsMeta()
    if SPEC_KEY in header:
        file_spec = spec_from_dict(json.loads(header[SPEC_KEY]))
        if not _same_network(spec, _io_like(file_spec, spec)):
            raise ValueError(
                f"{path} holds {file_spec.name} with other widths or conventions than this model ({spec.name}); "
                f"rebuild it from the file with mnv3.weights.model_from_file({str(path)!r})"
            )
        _adapt_for_finetuning(spec, file_spec, tensors, meta)
    expected = expected_shapes(spec)
    bad = [k for k, s in expected.items() if k in tensors and tuple(tensors[k].shape) != s]
    missing = [k for k in expected if k not in tensors and not k.startswith("classifier.")]
    extra = [k for k in tensors if k not in expected]
    if bad or missing or extra:
        detail = [f"{k}: file {list(tensors[k].shape)} vs model {list(expected[k])}" for k in bad[:3]] + [f"missing {k}" for k in missing[:3]] + [
            f"unexpected {k}" for k in extra[:3]
        ]
        raise ValueError(f"{path} does not fit {spec.name}: {'; '.join(detail)}")
    _load_partial_aware(model, tensors)
    return meta


def _load_foreign(model: nn.Module, path: Path, library: Library) -> WeightsMeta:
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    if not numerics_match(spec, library):
        valid = " or ".join(repr(p.value) for p in LIBRARY_PRESETS[library])
        raise ValueError(
            f"{path} is a {library.value} checkpoint; its weights give {library.value}'s logits only in a model built with "
            f"preset={valid} (padding, BN eps), but this one uses padding {spec.conventions.padding.value}, BN eps {spec.conventions.bn_eps}. "
            f"Use create_model({spec.name!r}, preset={LIBRARY_PRESETS[library][0].value!r}, weights=...)."
        )
    mapped = map_file(path, library)
    source_spec = spec.replace(num_classes=mapped.num_classes, in_chans=mapped.in_chans)
    check_fits(mapped, source_spec)
    preset = next(p for p in LIBRARY_PRESETS[library] if numerics_match(spec, library))
    meta = default_meta(library, preset, mapped.num_classes, f"{library.value} checkpoint {path.name}")
    _adapt_for_finetuning(spec, source_spec, mapped.tensors, meta)
    _load_partial_aware(model, mapped.tensors)
    return meta


def load_weights_into(model: nn.Module, weights: WeightsEntry | str | os.PathLike, *, progress: bool = True) -> WeightsMeta:
    """Load a named entry (object or name), an mnv3 safetensors file or a torchvision / timm / Keras checkpoint.

    A model with another class count than the weights takes everything but the classifier, and a
    1-channel model takes RGB weights with the stem summed over channels (fine-tuning; see
    :func:`_adapt_for_finetuning`). The metadata (preprocessing, categories, ...) is returned and kept as
    ``model.weights_meta``.
    """
    if getattr(model, "spec", None) is None:
        raise ValueError("load_weights_into takes an mnv3 model (built by create_model)")
    if isinstance(weights, WeightsEntry):
        meta = _load_entry(model, weights, progress)
    elif isinstance(weights, str) and weights in WEIGHTS:
        meta = _load_entry(model, get_weights(weights), progress)
    else:
        path = Path(weights)
        if not path.exists():
            import difflib

            close = difflib.get_close_matches(str(weights), list(WEIGHTS), n=3, cutoff=0.6)
            hint = f" Did you mean the named weights {', '.join(close)}?" if close else ""
            raise FileNotFoundError(
                f"weights {str(path)!r}: no such file, and not a named weights entry (see mnv3.weights.list_weights()).{hint}"
            )
        fmt = detect_format(path)
        meta = _load_mnv3_file(model, path) if fmt is FileFormat.MNV3 else _load_foreign(model, path, Library(fmt.value))
    model.weights_meta = meta
    return meta


def create_pretrained(name: str, *, progress: bool = True, **overrides: Any) -> nn.Module:
    """The model of a named weights entry, built with the entry's preset, weights loaded, eval mode."""
    from mnv3.models.registry import create_model

    entry = get_weights(name)
    num_classes = overrides.pop("num_classes", entry.num_classes)
    model = create_model(entry.model, num_classes=num_classes, preset=entry.preset, **overrides)
    load_weights_into(model, entry, progress=progress)
    return model.eval()


def save_torchvision(model: nn.Module, path: str | Path) -> Path:
    """Write the model's weights as a torchvision ``mobilenet_v3_*`` state dict (``torch.save``), atomically."""
    buf = io.BytesIO()
    torch.save(mnv3_to_torchvision(model), buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
