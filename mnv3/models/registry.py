"""One builder for every variant: registered names resolve to a recipe of spec transforms.

``create_model(name)`` = table -> preset conventions -> (reduced tail) -> (minimalistic)
-> width multiplier -> (output stride) -> classes. Nothing dispatches on substrings of names.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from mnv3.models.mobilenetv3 import MobileNetV3
from mnv3.spec import transforms as T
from mnv3.spec.conventions import Preset, get_preset
from mnv3.spec.serialize import load_spec
from mnv3.spec.tables import LARGE, SMALL
from mnv3.spec.types import Conventions, ModelSpec


class Family(str, Enum):
    """Which of the paper's two tables a variant starts from."""

    LARGE = "large"
    SMALL = "small"


TABLES: dict[Family, ModelSpec] = {Family.LARGE: LARGE, Family.SMALL: SMALL}


@dataclass(frozen=True)
class Variant:
    """A registered network: its table and the transforms that turn the table into it."""

    family: Family
    width: float = 1.0
    minimal: bool = False
    reduced_tail: bool = False
    halve_first_expansion: bool = False  # RF2 for segmentation also halves the C4 expansion
    output_stride: int = 32
    head_hidden: int | None = None  # explicit hidden-head width, under any preset
    paper_head_hidden: int | None = None  # hidden-head width under the paper preset only (Table 9's Large 1.25 row)
    dropout: float = 0.2
    description: str = ""


_REGISTRY: dict[str, Variant] = {}


def register(name: str, variant: Variant) -> None:
    """Add a named variant; names are unique."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    _REGISTRY[name] = variant


for _w, _tag in ((0.35, "035"), (0.5, "050"), (0.75, "075"), (1.0, "100"), (1.25, "125")):
    register(
        f"mobilenetv3_large_{_tag}",
        # Table 9's Large 1.25 row (7.5M params / 356M MAdds) fits an unscaled 1280 head (7.55M),
        # not the scaled 1600 one (8.26M); see docs/architecture.md.
        Variant(Family.LARGE, _w, paper_head_hidden=1280 if _w > 1 else None, description=f"MobileNetV3-Large {_w}x (Table 1, 9)"),
    )
    register(f"mobilenetv3_small_{_tag}", Variant(Family.SMALL, _w, description=f"MobileNetV3-Small {_w}x (Table 2, 9)"))
register("mobilenetv3_large_minimal_100", Variant(Family.LARGE, 1.0, minimal=True, description="Large minimalistic (TF-slim)"))
register("mobilenetv3_small_minimal_100", Variant(Family.SMALL, 1.0, minimal=True, description="Small minimalistic (TF-slim)"))
register("mobilenetv3_large_075_minimal", Variant(Family.LARGE, 0.75, minimal=True, description="Large 0.75 minimalistic"))
register("mobilenetv3_small_075_minimal", Variant(Family.SMALL, 0.75, minimal=True, description="Small 0.75 minimalistic"))
# Dense-task backbones (paper §6.3-6.4): reduced tail (†) for SSDLite, RF2 + output stride 16 for LR-ASPP.
register("mobilenetv3_large_100_detection", Variant(Family.LARGE, reduced_tail=True, description="Large, reduced tail (§6.3 †)"))
register("mobilenetv3_small_100_detection", Variant(Family.SMALL, reduced_tail=True, description="Small, reduced tail (§6.3 †)"))
register(
    "mobilenetv3_large_100_segmentation",
    Variant(Family.LARGE, reduced_tail=True, halve_first_expansion=True, output_stride=16, description="Large, RF2, OS 16 (§6.4)"),
)
register(
    "mobilenetv3_small_100_segmentation",
    Variant(Family.SMALL, reduced_tail=True, halve_first_expansion=True, output_stride=16, description="Small, RF2, OS 16 (§6.4)"),
)


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def get_variant(name: str) -> Variant:
    """The registered recipe; an unknown name lists the closest registered names."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See mnv3.list_models() for all {len(_REGISTRY)} names.")
    return _REGISTRY[name]


_VARIANT_FIELDS = {f.name for f in dataclasses.fields(Variant)} - {"family", "description"}
_CONVENTION_FIELDS = {f.name for f in dataclasses.fields(Conventions)}


def build_spec(
    name: str,
    *,
    num_classes: int = 1000,
    preset: Preset | str = Preset.PAPER,
    in_chans: int = 3,
    **overrides: Any,
) -> ModelSpec:
    """Resolve a registered name (plus overrides) to a concrete spec.

    Overrides are Variant fields (``width``, ``minimal``, ``reduced_tail``, ``output_stride``,
    ``head_hidden``, ``dropout``, ...) or Conventions fields (``bn_eps``, ``padding``, ...).
    """
    variant = get_variant(name)
    unknown = sorted(set(overrides) - _VARIANT_FIELDS - _CONVENTION_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for create_model; valid options: "
            f"{sorted(_VARIANT_FIELDS | _CONVENTION_FIELDS | {'num_classes', 'preset', 'in_chans', 'weights'})}"
        )
    variant = dataclasses.replace(variant, **{k: v for k, v in overrides.items() if k in _VARIANT_FIELDS})
    conventions = dataclasses.replace(get_preset(preset), **{k: v for k, v in overrides.items() if k in _CONVENTION_FIELDS})
    spec = TABLES[variant.family].replace(name=name, conventions=conventions, num_classes=num_classes, in_chans=in_chans)
    spec = spec.replace(head=dataclasses.replace(spec.head, dropout=variant.dropout))
    if variant.reduced_tail:
        spec = T.reduce_tail(spec, halve_first_expansion=variant.halve_first_expansion)
    if variant.minimal:
        spec = T.minimalistic(spec)
    head_hidden = variant.head_hidden
    if head_hidden is None and Preset(preset) is Preset.PAPER:
        head_hidden = variant.paper_head_hidden
    if variant.width != 1.0 or head_hidden is not None:
        spec = T.scale_width(spec, variant.width, head_hidden=head_hidden)
    if variant.output_stride != 32:
        spec = T.with_output_stride(spec, variant.output_stride)
    return spec


def create_model(
    name: str | ModelSpec | os.PathLike,
    num_classes: int | None = None,
    **overrides: Any,
) -> MobileNetV3:
    """Build a network from a registered name, a :class:`ModelSpec`, or a spec file (Path).

    ``weights=`` (a named weights entry, its name, or a local file) is loaded by
    :func:`mnv3.weights.load_weights_into`; a named entry also sets the preset it needs.
    """
    weights = overrides.pop("weights", None)
    if weights is not None and "preset" not in overrides and not isinstance(name, (ModelSpec, os.PathLike)):
        # a named weights entry computes its source's logits only under its own preset: use it
        from mnv3.weights.named import WEIGHTS, WeightsEntry

        entry = weights if isinstance(weights, WeightsEntry) else WEIGHTS.get(weights) if isinstance(weights, str) else None
        if entry is not None:
            overrides["preset"] = entry.preset
    if isinstance(name, ModelSpec):
        if overrides:
            raise ValueError(f"options {sorted(overrides)} apply to registered names; edit the spec instead")
        spec = name if num_classes is None else name.replace(num_classes=num_classes)
    elif isinstance(name, os.PathLike) or (isinstance(name, str) and name not in _REGISTRY and Path(name).suffix in (".json", ".yaml", ".yml")):
        spec = load_spec(name)
        if num_classes is not None:
            spec = spec.replace(num_classes=num_classes)
    else:
        spec = build_spec(name, num_classes=1000 if num_classes is None else num_classes, **overrides)
    model = MobileNetV3(spec)
    if weights is not None:
        from mnv3.weights import load_weights_into

        load_weights_into(model, weights)
    return model
