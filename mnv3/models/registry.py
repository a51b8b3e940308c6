"""One builder for every variant: registered names resolve to a recipe of spec transforms.

``create_model(name)`` = table -> preset conventions -> (SSDLite / LR-ASPP head spec) -> (reduced
tail) -> (minimalistic) -> width multiplier -> (output stride) -> classes. A spec with a
``detection`` head builds the SSDLite detector (§6.3), one with a ``segmentation`` head the LR-ASPP
segmenter (§6.4), any other the classifier. Nothing dispatches on substrings of names.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnv3.models.lraspp import LRASPP
from mnv3.models.mobilenetv3 import MobileNetV3
from mnv3.models.ssdlite import SSDLite
from mnv3.spec import transforms as T
from mnv3.spec.conventions import DETECTION_BN_MOMENTUM, Preset, get_preset, get_segmentation_preset, get_ssdlite_preset
from mnv3.spec.segmentation import LRASPPSpec, PoolMode, SegmentationHead
from mnv3.spec.serialize import load_spec
from mnv3.spec.tables import LARGE, MNASNET_A1, MNASNET_SE_RATIO, SMALL
from mnv3.spec.types import Conventions, Family, ModelSpec, Origin
from mnv3.utils.suggest import did_you_mean

TABLES: dict[Family, ModelSpec] = {Family.LARGE: LARGE, Family.SMALL: SMALL, Family.MNASNET: MNASNET_A1}
# conventions a table carries under every preset (MnasNet's SE squeezes 1/4 of the block input, not of the expansion)
TABLE_CONVENTIONS: dict[Family, dict[str, Any]] = {Family.MNASNET: {"se_ratio": MNASNET_SE_RATIO}}
DETECTION_NUM_CLASSES = 91  # COCO's 90 classes + background, as torchvision and the TF OD API count them
SEGMENTATION_NUM_CLASSES = 19  # Cityscapes' 19 evaluated classes (paper §6.4, Tables 7-8)
Network = MobileNetV3 | SSDLite | LRASPP


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
    detection: bool = False  # an SSDLite detector on this backbone (§6.3), head spec from the preset
    segmentation_head: str | None = None  # "lraspp" / "raspp": a segmenter on this backbone (§6.4, Table 7), head spec from the preset
    inter_channels: int | None = None  # the segmentation head's F (Table 7); None = the preset's 128
    pool: str | None = None  # the pooling branch's mode, "fixed" / "scaled" / "global"; None = the preset's
    description: str = ""

    @property
    def segmentation(self) -> bool:
        """Whether this variant is a segmenter (LR-ASPP or R-ASPP, §6.4)."""
        return self.segmentation_head is not None


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
# MnasNet-A1 (MnasNet paper arXiv 1807.11626, Fig. 7; 3.9M params): the NAS seed of §4.1, a point of mnv3's NAS space.
register("mnasnet_a1", Variant(Family.MNASNET, description="MnasNet-A1 (arXiv 1807.11626 Fig. 7; the §4.1 NAS seed)"))
register("mobilenetv3_large_minimal_100", Variant(Family.LARGE, 1.0, minimal=True, description="Large minimalistic (TF-slim)"))
register("mobilenetv3_small_minimal_100", Variant(Family.SMALL, 1.0, minimal=True, description="Small minimalistic (TF-slim)"))
register("mobilenetv3_large_minimal_075", Variant(Family.LARGE, 0.75, minimal=True, description="Large 0.75 minimalistic"))
register("mobilenetv3_small_minimal_075", Variant(Family.SMALL, 0.75, minimal=True, description="Small 0.75 minimalistic"))
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

# SSDLite detectors (§6.3, Table 6): the full tail (V3, V3-Small rows) and the reduced one († rows).
for _fam in (Family.LARGE, Family.SMALL):
    _t = _fam.value.capitalize()
    register(f"ssdlite_mobilenetv3_{_fam.value}_100", Variant(_fam, detection=True, description=f"SSDLite, MobileNetV3-{_t} (§6.3, Table 6)"))
    register(
        f"ssdlite_mobilenetv3_{_fam.value}_100_reduced",
        Variant(_fam, reduced_tail=True, detection=True, description=f"SSDLite, MobileNetV3-{_t}, reduced tail (§6.3 †, Table 6)"),
    )

# Segmenters (§6.4, Tables 7-8): LR-ASPP with RF2 at output stride 16 (rows 8 and 11, the chosen ones),
# without RF2 (torchvision's lraspp_mobilenet_v3_large under preset="torchvision"), and the R-ASPP
# baselines (rows 5-6, F = 256; Small's, the same head, for the Fashion scenes benchmark). Row 7 is inter_channels=256, Table 8's OS 32 rows output_stride=32.
_RF2 = {"reduced_tail": True, "halve_first_expansion": True}
for _fam in (Family.LARGE, Family.SMALL):
    _t = _fam.value.capitalize()
    register(
        f"lraspp_mobilenetv3_{_fam.value}_100",
        Variant(_fam, output_stride=16, segmentation_head="lraspp", **_RF2, description=f"LR-ASPP, MobileNetV3-{_t}, RF2, OS 16 (§6.4, Table 7)"),
    )
register(
    "lraspp_mobilenetv3_large_100_full",
    Variant(Family.LARGE, output_stride=16, segmentation_head="lraspp", description="LR-ASPP, MobileNetV3-Large, full tail, OS 16 (§6.4; torchvision)"),
)
register(
    "raspp_mobilenetv3_large_100",
    Variant(Family.LARGE, output_stride=16, segmentation_head="raspp", inter_channels=256, **_RF2, description="R-ASPP F=256, Large, RF2 (Table 7 row 6)"),
)
register(
    "raspp_mobilenetv3_small_100",
    Variant(Family.SMALL, output_stride=16, segmentation_head="raspp", inter_channels=256, **_RF2, description="R-ASPP F=256, Small, RF2 (the baseline of Table 7 row 11)"),
)
register(
    "raspp_mobilenetv3_large_100_full",
    Variant(Family.LARGE, output_stride=16, segmentation_head="raspp", inter_channels=256, description="R-ASPP F=256, Large, full tail (Table 7 row 5)"),
)


# Old spellings that users' scripts may hold -> the registered name (family, then minimal, then width).
DEPRECATED_NAMES: dict[str, str] = {
    "mobilenetv3_large_075_minimal": "mobilenetv3_large_minimal_075",
    "mobilenetv3_small_075_minimal": "mobilenetv3_small_minimal_075",
}


def list_models(*, detection: bool | None = None, segmentation: bool | None = None) -> list[str]:
    """Registered names, sorted: all; the detectors (``detection=True``, §6.3) and / or segmenters (``segmentation=True``, §6.4).

    A flag given only as False (``list_models(detection=False)``) lists the classifiers: neither
    detectors nor segmenters.
    """
    if detection is None and segmentation is None:
        return sorted(_REGISTRY)
    if not (detection or segmentation):
        return sorted(n for n, v in _REGISTRY.items() if not v.detection and not v.segmentation)
    return sorted(n for n, v in _REGISTRY.items() if (detection and v.detection) or (segmentation and v.segmentation))


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered model name (or a deprecated spelling of one)."""
    return name in _REGISTRY or name in DEPRECATED_NAMES


def canonical_name(name: str) -> str:
    """The registered spelling of ``name`` (a deprecated one warns); unknown names raise with close matches."""
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(f"model name {name!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
        return new
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY, n=5, cutoff=0.5)
        raise ValueError(f"unknown model {name!r}.{hint} See mnv3.list_models() for all {len(_REGISTRY)} names.")
    return name


def get_variant(name: str) -> Variant:
    """The registered recipe; an unknown name lists the closest registered names."""
    return _REGISTRY[canonical_name(name)]


_VARIANT_FIELDS = {f.name for f in dataclasses.fields(Variant)} - {"family", "description"}
_CONVENTION_FIELDS = {f.name for f in dataclasses.fields(Conventions)}
# Variant fields that change the network's structure: overriding one changes the spec's name.
_STRUCTURAL_FIELDS = tuple(f.name for f in dataclasses.fields(Variant) if f.name not in {"family", "description", "dropout", "paper_head_hidden"})


def spec_name(name: str, registered: Variant, variant: Variant) -> str:
    """The registered name, plus ``+field=value`` for every structural option that differs from it.

    A width-0.5 ``mobilenetv3_large_100`` is ``mobilenetv3_large_100+width=0.5``: a spec's name never
    claims a network it is not.
    """
    changed = [f"+{k}={getattr(variant, k)}" for k in _STRUCTURAL_FIELDS if getattr(variant, k) != getattr(registered, k)]
    return name + "".join(changed)


def build_spec(
    name: str,
    *,
    num_classes: int | None = None,
    preset: Preset | str = Preset.PAPER,
    in_chans: int = 3,
    **overrides: Any,
) -> ModelSpec:
    """Resolve a registered name (plus overrides) to a concrete spec.

    ``num_classes`` defaults to 1000 for classifiers, 91 (COCO + background) for detectors and 19
    (Cityscapes) for segmenters. A detector's BN momentum is 0.03 (TF decay 0.97) under both of its
    presets. Overrides are Variant fields (``width``, ``minimal``, ``reduced_tail``, ``output_stride``,
    ``head_hidden``, ``dropout``, ``segmentation_head``, ``inter_channels``, ``pool``, ...) or
    Conventions fields (``bn_eps``, ``padding``, ...).
    """
    name = canonical_name(name)
    registered = _REGISTRY[name]
    unknown = sorted(set(overrides) - _VARIANT_FIELDS - _CONVENTION_FIELDS)
    if unknown:
        valid = sorted(_VARIANT_FIELDS | _CONVENTION_FIELDS | {"num_classes", "preset", "in_chans", "weights"})
        hints = "".join(did_you_mean(k, valid) for k in unknown)
        raise ValueError(f"unknown option(s) {unknown} for create_model.{hints} Valid options: {valid}")
    variant = dataclasses.replace(registered, **{k: v for k, v in overrides.items() if k in _VARIANT_FIELDS})
    conventions = get_preset(preset)
    if variant.detection:
        conventions = dataclasses.replace(conventions, bn_momentum=DETECTION_BN_MOMENTUM)
    conventions = dataclasses.replace(conventions, **TABLE_CONVENTIONS.get(variant.family, {}))
    conventions = dataclasses.replace(conventions, **{k: v for k, v in overrides.items() if k in _CONVENTION_FIELDS})
    if num_classes is None:
        num_classes = DETECTION_NUM_CLASSES if variant.detection else SEGMENTATION_NUM_CLASSES if variant.segmentation else 1000
    origin = Origin(
        model=name,
        family=variant.family,
        width=variant.width,
        minimal=variant.minimal,
        reduced_tail=variant.reduced_tail,
        halve_first_expansion=variant.halve_first_expansion,
        output_stride=variant.output_stride,
    )
    spec = TABLES[variant.family].replace(
        name=spec_name(name, registered, variant), conventions=conventions, num_classes=num_classes, in_chans=in_chans, origin=origin
    )
    spec = spec.replace(head=dataclasses.replace(spec.head, dropout=variant.dropout))
    if variant.detection:
        spec = spec.replace(detection=get_ssdlite_preset(preset))
    seg = segmentation_head_spec(variant, preset)
    if seg is not None:
        spec = spec.replace(segmentation=seg)
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


def _choice(enum: type[SegmentationHead] | type[PoolMode], value: Any, option: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{option} must be one of {[e.value for e in enum]}, got {value!r}") from None


def segmentation_head_spec(variant: Variant, preset: Preset | str) -> LRASPPSpec | None:
    """The LR-ASPP / R-ASPP head spec of a variant (§6.4): the preset's, with ``segmentation_head``, ``inter_channels`` and ``pool`` applied."""
    if not variant.segmentation:
        given = [k for k in ("inter_channels", "pool") if getattr(variant, k) is not None]
        if given:
            raise ValueError(f"options {given} apply to segmenters (see mnv3.list_models(segmentation=True)) or with segmentation_head='lraspp'")
        return None
    seg = dataclasses.replace(get_segmentation_preset(preset), head=_choice(SegmentationHead, variant.segmentation_head, "segmentation_head"))
    if variant.inter_channels is not None:
        seg = dataclasses.replace(seg, inter_channels=variant.inter_channels)
    if variant.pool is not None:
        seg = dataclasses.replace(seg, pool=_choice(PoolMode, variant.pool, "pool"))
    return seg


def create_model(
    name: str | ModelSpec | os.PathLike,
    num_classes: int | None = None,
    **overrides: Any,
) -> Network:
    """A randomly initialised network from a registered name (plus overrides), a :class:`ModelSpec` or a spec file.

    Weights are the weights layer's job: ``mnv3.create_model(name, weights=...)`` and
    :func:`mnv3.weights.load_model` build through this function and then load them.
    """
    if "weights" in overrides:
        raise ValueError("mnv3.models.create_model builds random-init networks; load weights with mnv3.create_model(..., weights=...)")
    return build_network(resolve_spec(name, num_classes, **overrides))


def build_network(spec: ModelSpec) -> Network:
    """The network of a spec: SSDLite with a ``detection`` head (§6.3), LR-ASPP with a ``segmentation`` head (§6.4), else the classifier."""
    if spec.detection is not None:
        return SSDLite(spec)
    if spec.segmentation is not None:
        return LRASPP(spec)
    return MobileNetV3(spec)


def is_spec_file(name: str | ModelSpec | os.PathLike) -> bool:
    """Whether ``name`` names a spec file (``.json`` / ``.yaml``) rather than a registered network."""
    return isinstance(name, os.PathLike) or (isinstance(name, str) and not is_registered(name) and Path(name).suffix in SPEC_SUFFIXES)


def resolve_spec(name: str | ModelSpec | os.PathLike, num_classes: int | None = None, **overrides: Any) -> ModelSpec:
    """The spec ``create_model`` builds: a registered name with overrides, a spec object, or a spec file."""
    if isinstance(name, ModelSpec):
        if overrides:
            raise ValueError(f"options {sorted(overrides)} apply to registered names; edit the spec instead")
        return name if num_classes is None else name.replace(num_classes=num_classes)
    if is_spec_file(name):
        if overrides:
            raise ValueError(f"options {sorted(overrides)} apply to registered names, not to the spec file {str(name)!r}; edit the file")
        spec = load_spec(name)
        return spec if num_classes is None else spec.replace(num_classes=num_classes)
    return build_spec(name, num_classes=num_classes, **overrides)


SPEC_SUFFIXES = (".json", ".yaml", ".yml")
