"""One resolver for every weights source: source -> (spec, tensors, metadata).

The Python API (``mnv3.create_model(..., weights=)``, :func:`load_model`, :func:`load_weights_into`)
and every command (predict, eval, export, bench, convert, train's fine-tuning) read weights through
:func:`resolve`. A source is

- a named entry (``mobilenetv3_large_100.torchvision_v2``) or its :class:`WeightsEntry`,
- an mnv3 ``.safetensors`` file (it carries its spec),
- a torchvision / timm / Keras checkpoint (the library is told by its keys, the model by its shapes),
- a training run folder (its ``model.safetensors``, else ``last.pt``) or a training checkpoint ``.pt``.

The weights decide the network. A model name, preset or option the caller adds must agree with
them; when it does not, the error says what the weights hold and which call would fit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnv3.models.registry import Network, build_network, build_spec, is_registered, resolve_spec
from mnv3.spec.conventions import Preset, get_preset
from mnv3.spec.serialize import spec_from_dict
from mnv3.spec.types import ModelSpec
from mnv3.utils.preprocessing import Preprocessing
from mnv3.utils.suggest import did_you_mean
from mnv3.utils.torchfile import load_torch_file
from mnv3.weights.checkpoint import TORCH_SUFFIXES, FileFormat, detect_format, unwrap_state
from mnv3.weights.convert.common import LIBRARY_PRESETS, Library, check_fits, expected_shapes, fitting_models, numerics_match
from mnv3.weights.io import META_KEY, SPEC_KEY, WeightsMeta, read_weights
from mnv3.weights.load import SOURCE_NAMES, default_meta, entry_meta, map_file, map_state, resolve_model
from mnv3.weights.named import WEIGHTS, WeightsEntry, get_weights

RUN_WEIGHTS = "model.safetensors"
RUN_CHECKPOINT = "last.pt"
# an mnv3 training checkpoint (mnv3.train.checkpoint) is a dict with a "format_version" or "config" entry; these rebuild its network
TRAINING_KEYS = ("config", "classes", "model", "spec")


class SourceKind(str, Enum):
    """What kind of thing a weights source was."""

    NAMED = "named"
    MNV3 = "mnv3"
    FOREIGN = "foreign"
    CHECKPOINT = "checkpoint"


@dataclass
class Resolved:
    """The network a weights source was made for, its tensors (mnv3 state-dict keys) and its metadata."""

    spec: ModelSpec
    tensors: dict[str, torch.Tensor]
    meta: WeightsMeta
    kind: SourceKind
    location: str  # the entry's name or the file read
    library: Library | None = None  # the library that wrote a foreign checkpoint


def preset_of(spec: ModelSpec) -> Preset | None:
    """The convention preset ``spec`` was built with (BN momentum aside), or None for custom conventions."""
    for p in Preset:
        if dataclasses.replace(get_preset(p), bn_momentum=spec.conventions.bn_momentum) == spec.conventions:
            return p
    return None


def same_network(a: ModelSpec, b: ModelSpec) -> bool:
    """Equal up to name, origin, dropout and BN momentum (which do not change what the weights compute)."""

    def key(s: ModelSpec) -> ModelSpec:
        return dataclasses.replace(
            s,
            name="_",
            origin=None,
            head=dataclasses.replace(s.head, dropout=0.0),
            conventions=dataclasses.replace(s.conventions, bn_momentum=0.0),
        )

    return key(a) == key(b)


def resolve(
    source: WeightsEntry | str | os.PathLike,
    *,
    model: str | ModelSpec | os.PathLike | None = None,
    preset: Preset | str | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Resolved:
    """Read a weights source; ``model`` / ``preset`` / ``overrides`` (width, ...) are checked against it.

    ``model`` may be a registered name (mnv3's or the source library's own, e.g.
    ``tf_mobilenetv3_large_075``), a spec or a spec file. Class count and input channels are not
    checked here: :func:`load_model` adapts them for fine-tuning.
    """
    return _resolve(source, model, preset, progress, overrides)


def _resolve(
    source: WeightsEntry | str | os.PathLike, model: Any, preset: Preset | str | None, progress: bool, overrides: dict[str, Any],
    foreign_model: ModelSpec | None = None,
) -> Resolved:
    """:func:`resolve`, reading a file once; ``foreign_model`` is the network a foreign checkpoint file is loaded into."""
    preset = Preset(preset) if preset is not None else None
    entry = source if isinstance(source, WeightsEntry) else WEIGHTS.get(source) if isinstance(source, str) else None
    if entry is not None:
        _check(entry_spec(entry), entry.name, model, preset, overrides)  # before any download
        return _from_entry(entry, progress)
    path = Path(source)
    if not path.exists():
        hint = did_you_mean(str(source), WEIGHTS, cutoff=0.6)
        raise FileNotFoundError(
            f"weights {str(source)!r}: no such file or run folder, and not a named weights entry "
            f"(see mnv3.weights.list_weights()).{hint}"
        )
    if path.is_dir():
        path = _run_file(path)
    # the file is read here, once: its tensors go down to format detection, shape inference and conversion
    state: dict[str, torch.Tensor] | None = None
    header: dict[str, str] = {}
    if path.suffix in TORCH_SUFFIXES:
        obj = _torch_load(path)
        if _is_training_checkpoint(obj):
            return _checked(_from_training_checkpoint(path, obj), model, preset, overrides)
        state = unwrap_state(obj, path)
    elif path.suffix == ".safetensors":
        state, header = read_weights(path)
    fmt = FileFormat.MNV3 if SPEC_KEY in header else detect_format(path, state)
    if fmt is FileFormat.MNV3:
        mnv3 = _from_mnv3_file(path, (state, header) if path.suffix == ".safetensors" else None)
        return _checked(mnv3, model, preset, overrides)
    return _from_foreign(path, Library(fmt.value), model if foreign_model is None else foreign_model, preset, overrides, state)


def _run_file(folder: Path) -> Path:
    for name in (RUN_WEIGHTS, RUN_CHECKPOINT):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} is a folder without {RUN_WEIGHTS} or {RUN_CHECKPOINT}: not an mnv3 training run folder")


def entry_spec(entry: WeightsEntry) -> ModelSpec:
    """The network a named entry's weights are for."""
    return build_spec(entry.model, preset=entry.preset, num_classes=entry.num_classes)


def _from_entry(entry: WeightsEntry, progress: bool) -> Resolved:
    from mnv3.weights.download import fetch

    spec = entry_spec(entry)
    path = fetch(entry, progress=progress)
    mapped = map_file(path, entry.library)
    check_fits(mapped, spec)
    return Resolved(spec, mapped.tensors, entry_meta(entry), SourceKind.NAMED, entry.name, entry.library)


def _from_mnv3_file(path: Path, read: tuple[dict[str, torch.Tensor], dict[str, str]] | None = None) -> Resolved:
    tensors, header = read if read is not None else read_weights(path)  # a .pth of mnv3 keys gets read_weights' error
    meta = WeightsMeta.from_json(header[META_KEY]) if META_KEY in header else WeightsMeta()
    if SPEC_KEY in header:
        spec = spec_from_dict(json.loads(header[SPEC_KEY]))
    else:
        raise ValueError(
            f"{path} holds mnv3 tensors without a spec in its header (not written by mnv3.weights.save_weights); "
            "rebuild the model and use model.load_state_dict(safetensors.torch.load_file(path))"
        )
    _check_shapes(path, spec, tensors)
    return Resolved(spec, tensors, meta, SourceKind.MNV3, str(path))


def _is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and ("config" in obj or "format_version" in obj)


def _torch_load(path: Path) -> Any:
    return load_torch_file(path, "checkpoint")


def _from_training_checkpoint(path: Path, ckpt: dict[str, Any]) -> Resolved:
    for key in TRAINING_KEYS:
        if ckpt.get(key) is None:
            why = "written by an older mnv3" if key == "spec" else "incomplete"
            raise ValueError(
                f"{path} is an mnv3 training checkpoint but has no {key!r} entry ({why}); evaluate the run's "
                f"model.safetensors, or resume the run once with `mnv3 train --resume {path.parent}` to rewrite it"
            )
    spec = spec_from_dict(ckpt["spec"])
    if ckpt.get("ema"):  # the averaged network is the one a run evaluates and saves
        state = {k[len("module.") :]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    else:
        state = dict(ckpt["model"])
    pp = ckpt.get("preprocessing")
    meta = WeightsMeta(
        preprocessing=Preprocessing.from_dict(pp) if pp else Preprocessing(),
        categories=list(ckpt.get("classes", [])),
        source=f"mnv3 train checkpoint {path} (step {ckpt.get('step')})",
    )
    _check_shapes(path, spec, state)
    return Resolved(spec, state, meta, SourceKind.CHECKPOINT, str(path))


def _check_shapes(path: Path, spec: ModelSpec, tensors: dict[str, torch.Tensor]) -> None:
    expected = expected_shapes(spec)
    bad = [k for k, s in expected.items() if k in tensors and tuple(tensors[k].shape) != s]
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if bad or missing or extra:
        detail = [f"{k}: file {list(tensors[k].shape)} vs spec {list(expected[k])}" for k in bad[:3]]
        detail += [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in extra[:3]]
        raise ValueError(f"{path}: its tensors do not fit the spec it carries ({spec.name}): {'; '.join(detail)}")


def _wanted(model: str | ModelSpec | os.PathLike | None, preset: Preset | None, overrides: dict[str, Any], like: ModelSpec) -> ModelSpec | None:
    """The spec the caller asks for (with the weights' class count and channels), or None when they ask nothing."""
    if model is None and not overrides:
        return None
    if model is None:
        if like.origin is None:
            raise ValueError(f"options {sorted(overrides)} need a registered model; these weights hold a custom spec ({like.name})")
        model = like.origin.model
    if isinstance(model, str) and is_registered(model):
        p = preset if preset is not None else (preset_of(like) or Preset.PAPER)
        return build_spec(model, preset=p, num_classes=like.num_classes, in_chans=like.in_chans, **overrides)
    return resolve_spec(model, **overrides).replace(num_classes=like.num_classes, in_chans=like.in_chans)


def _checked(res: Resolved, model: Any, preset: Preset | None, overrides: dict[str, Any]) -> Resolved:
    _check(res.spec, res.location, model, preset, overrides)
    return res


def _check(spec: ModelSpec, location: str, model: Any, preset: Preset | None, overrides: dict[str, Any]) -> None:
    """Refuse a model / preset / option that contradicts what the weights hold."""
    held = preset_of(spec)
    if preset is not None and held is not preset:
        raise ValueError(
            f"{location} holds {spec.name} under the {held.value if held else 'custom'} conventions, not preset "
            f"{preset.value!r}: weights compute their logits only under their own conventions. Drop --preset / preset= "
            "(the weights decide it)"
        )
    wanted = _wanted(model, preset, overrides, spec)
    if wanted is not None and not same_network(wanted, spec):
        raise ValueError(
            f"{location} holds {spec.name}, not {wanted.name}: the widths or layers differ. Drop the model name "
            "and options (the weights carry their network), or give the weights of that model"
        )


def _from_foreign(
    path: Path, library: Library, model: Any, preset: Preset | None, overrides: dict[str, Any],
    state: dict[str, torch.Tensor] | None = None,
) -> Resolved:
    """A torchvision / timm / Keras checkpoint (``state``: its tensors, if read): the model is ``model`` or told by the shapes."""
    try:
        mapped = map_file(path, library) if state is None else map_state(state, library)
    except ValueError as e:  # the converters describe the tensors; the line must also name the file
        raise (e if str(path) in str(e) else ValueError(f"{path}: {e}")) from None
    if preset is not None and preset not in LIBRARY_PRESETS[library]:
        valid = " or ".join(repr(p.value) for p in LIBRARY_PRESETS[library])
        raise ValueError(
            f"{path} is a {library.value} checkpoint; its weights give {library.value}'s logits only under preset {valid}, "
            f"not {preset.value!r}. Drop --preset / preset= (the checkpoint decides it)"
        )
    if isinstance(model, ModelSpec):
        spec = model.replace(num_classes=mapped.num_classes, in_chans=mapped.in_chans)
        if not numerics_match(spec, library):
            valid = " or ".join(repr(p.value) for p in LIBRARY_PRESETS[library])
            c = spec.conventions
            raise ValueError(
                f"{path} is a {library.value} checkpoint; its weights give {library.value}'s logits only in a model built with "
                f"preset={valid} (padding, BN eps), but this one uses padding {c.padding.value}, BN eps {c.bn_eps}. "
                f"Use create_model({(spec.origin.model if spec.origin else spec.name)!r}, preset={LIBRARY_PRESETS[library][0].value!r}, weights=...)."
            )
    elif model is not None:
        name, chosen = resolve_model(library, str(model), preset)
        spec = build_spec(name, preset=chosen, num_classes=mapped.num_classes, in_chans=mapped.in_chans, **overrides)
    else:
        spec = _infer_spec(path, mapped, library, preset, overrides)
    try:
        check_fits(mapped, spec)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    found = preset_of(spec)
    meta = default_meta(
        library, found if found in LIBRARY_PRESETS[library] else LIBRARY_PRESETS[library][0], mapped.num_classes,
        f"{library.value} checkpoint {path.name}", detection=spec.detection is not None, segmentation=spec.segmentation is not None,
    )
    return Resolved(spec, mapped.tensors, meta, SourceKind.FOREIGN, str(path), library)


def _infer_spec(path: Path, mapped: Any, library: Library, preset: Preset | None, overrides: dict[str, Any]) -> ModelSpec:
    """The one registered network (and preset) a foreign checkpoint fits by its tensors' shapes."""
    presets = (preset,) if preset is not None else LIBRARY_PRESETS[library]
    fits = fitting_models(mapped, presets)
    names = sorted({n for n, _ in fits})
    if not names:
        raise ValueError(
            f"{path}: no registered model fits this {library.value} checkpoint ({len(mapped.tensors)} tensors, "
            f"{mapped.num_classes} classes) under preset {' / '.join(p.value for p in presets)}; pass the model it is for (--model NAME)"
        )
    if len(names) > 1:
        raise ValueError(f"{path} fits several registered models ({', '.join(names)}); pass the model name (--model NAME)")
    chosen = {p for n, p in fits}
    if len(chosen) > 1:
        own = {n: m for n, (m, p) in SOURCE_NAMES[library].items() if m == names[0]}
        raise ValueError(
            f"{path} fits {names[0]} under presets {sorted(p.value for p in chosen)}: a {library.value} checkpoint does not say "
            f"which ({', '.join(sorted(own)) or library.value + ' names'}); pass --model with the library's own name "
            f"(e.g. {', '.join(sorted(own)[:2])}) or --preset"
        )
    return build_spec(names[0], preset=chosen.pop(), num_classes=mapped.num_classes, in_chans=mapped.in_chans, **overrides)


def adapt_for_finetuning(res: Resolved, num_classes: int, in_chans: int) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Tensors and metadata for a model with another class count and / or one input channel.

    Another class count: the classifier is not loaded (the model keeps its own, for fine-tuning).
    One input channel from RGB weights: the stem kernel is summed over its input channels, the usual
    grayscale adaptation (timm's ``adapt_input_conv``), and the preprocessing becomes grayscale with
    the channel-averaged mean / std: a starting point for fine-tuning, not the source's exact outputs.
    """
    tensors, meta = dict(res.tensors), dataclasses.replace(res.meta, categories=list(res.meta.categories))
    if num_classes != res.spec.num_classes:
        for key in [k for k in tensors if _is_class_layer(k)]:
            tensors.pop(key)
        meta.categories = []
    if in_chans != res.spec.in_chans:
        if (in_chans, res.spec.in_chans) != (1, 3):
            raise ValueError(f"weights for {res.spec.in_chans}-channel input cannot be adapted to {in_chans} channels (only RGB -> 1)")
        tensors["stem.conv.weight"] = tensors["stem.conv.weight"].sum(dim=1, keepdim=True)
        meta.preprocessing = meta.preprocessing.for_channels(1)
    return tensors, meta


def _is_class_layer(key: str) -> bool:
    """Whether a state-dict key belongs to what the class count shapes: the classifier, SSDLite's class predictors' 1x1 convs, or a segmenter's class convs (§6.4)."""
    seg_classes = ("seg_head.low_classifier.", "seg_head.high_classifier.", "seg_head.classifier.")
    return key.startswith(("classifier.", *seg_classes)) or (key.startswith("cls_head.") and ".pred." in key)


def _put(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    dtype = next(model.parameters()).dtype
    ready = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    missing, unexpected = model.load_state_dict(ready, strict=False)
    missing = [k for k in missing if not _is_class_layer(k)]
    if missing or unexpected:
        raise ValueError(f"internal error: weights lack {missing[:3]} / have extra {unexpected[:3]}")


def load_resolved(
    res: Resolved, *, num_classes: int | None = None, in_chans: int | None = None, dropout: float | None = None,
    bn_momentum: float | None = None,
) -> Network:
    """Build the weights' network (with another class count / one channel for fine-tuning) and load them."""
    spec = res.spec
    num_classes = spec.num_classes if num_classes is None else num_classes
    in_chans = spec.in_chans if in_chans is None else in_chans
    tensors, meta = adapt_for_finetuning(res, num_classes, in_chans)
    spec = spec.replace(num_classes=num_classes, in_chans=in_chans)
    if dropout is not None:
        spec = spec.replace(head=dataclasses.replace(spec.head, dropout=dropout))
    if bn_momentum is not None:  # a training choice: it does not change what the weights compute
        spec = spec.replace(conventions=dataclasses.replace(spec.conventions, bn_momentum=bn_momentum))
    model = build_network(spec)
    _put(model, tensors)
    model.weights_meta = meta
    return model


def load_model(
    source: WeightsEntry | str | os.PathLike,
    *,
    model: str | ModelSpec | os.PathLike | None = None,
    preset: Preset | str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Network:
    """The network of a weights source with its weights loaded (training mode, as ``create_model`` returns).

    ``num_classes`` / ``in_chans`` other than the weights' give a fine-tuning start (see
    :func:`adapt_for_finetuning`). The metadata is ``model.weights_meta``.
    """
    dropout = overrides.pop("dropout", None)
    bn_momentum = overrides.pop("bn_momentum", None)
    res = resolve(source, model=model, preset=preset, progress=progress, **overrides)
    return load_resolved(res, num_classes=num_classes, in_chans=in_chans, dropout=dropout, bn_momentum=bn_momentum)


def load_weights_into(model: nn.Module, weights: WeightsEntry | str | os.PathLike, *, progress: bool = True) -> WeightsMeta:
    """Load weights into an existing mnv3 model whose network they fit (class count and channels may differ).

    The metadata (preprocessing, categories, ...) is returned and kept as ``model.weights_meta``.
    """
    spec: ModelSpec | None = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("load_weights_into takes an mnv3 model (built by create_model)")
    entry = weights if isinstance(weights, WeightsEntry) else WEIGHTS.get(weights) if isinstance(weights, str) else None
    if entry is not None:
        _refuse_other_network(spec, entry_spec(entry), entry.name, weights)  # before any download
    foreign_model = spec if entry is None and Path(weights).is_file() else None  # a foreign checkpoint is loaded as this network
    res = _resolve(weights, None, None, progress, {}, foreign_model=foreign_model)
    _refuse_other_network(spec, res.spec, res.location, weights)
    tensors, meta = adapt_for_finetuning(res, spec.num_classes, spec.in_chans)
    _put(model, tensors)
    model.weights_meta = meta
    return meta


def _refuse_other_network(spec: ModelSpec, held_spec: ModelSpec, location: str, weights: Any) -> None:
    if not same_network(spec, held_spec.replace(num_classes=spec.num_classes, in_chans=spec.in_chans)):
        held = held_spec.origin.model if held_spec.origin else held_spec.name
        p = preset_of(held_spec)
        if isinstance(weights, WeightsEntry) or (isinstance(weights, str) and weights in WEIGHTS):
            fix = f"mnv3.weights.create_pretrained({location!r})"
        elif p is not None:
            fix = f"mnv3.create_model({held!r}, preset={p.value!r}, weights={str(weights)!r})"
        else:
            fix = f"mnv3.weights.load_model({str(weights)!r})"
        own = preset_of(spec)
        raise ValueError(
            f"{location} holds {held_spec.name} (preset {p.value if p else 'custom'}); this model ({spec.name}, preset "
            f"{own.value if own else 'custom'}) is a different network or uses other conventions. Build it from the "
            f"weights: {fix}"
        )


def create_pretrained(name: str, *, progress: bool = True, **overrides: Any) -> Network:
    """The model of a named weights entry, built with the entry's preset, weights loaded, eval mode."""
    entry = get_weights(name)
    return load_model(entry, progress=progress, **overrides).eval()


def convert_checkpoint(
    path: str | os.PathLike, library: Library | str, model: str | None = None, *, preset: Preset | str | None = None
) -> tuple[Network, WeightsMeta]:
    """An mnv3 model (eval mode) holding a torchvision / timm / Keras checkpoint, and its metadata.

    ``model`` (mnv3's or the library's own name) is optional: the checkpoint's shapes tell it.
    """
    library = Library(library)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    res = _from_foreign(path, library, model, Preset(preset) if preset is not None else None, {})
    res.meta.source = f"converted from {library.value} checkpoint {Path(path).name}"
    net = load_resolved(res)
    return net.eval(), net.weights_meta


def model_from_file(path: str | os.PathLike) -> tuple[Network, WeightsMeta]:
    """Rebuild the network stored in an mnv3 safetensors file (or any weights source) with its weights."""
    model = load_model(path)
    return model, model.weights_meta
