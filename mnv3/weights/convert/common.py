"""What every converter shares: mnv3 key names, the mapped-tensor record, and the check of a
mapped checkpoint against a target spec that names the first mismatching tensors and suggests the
registered model that would fit (each library's variants differ in widths and conventions; see
docs/weights.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import torch

from mnv3.models.registry import build_network, build_spec, list_models
from mnv3.spec.conventions import Preset, get_preset
from mnv3.spec.types import ModelSpec

BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
SEGMENTATION_CLASS_KEYS = ("seg_head.high_classifier.weight", "seg_head.classifier.weight")  # LR-ASPP, R-ASPP (§6.4)


class Library(str, Enum):
    """A library whose MobileNetV3 checkpoints mnv3 converts."""

    TORCHVISION = "torchvision"
    TIMM = "timm"
    KERAS = "keras"


# The convention presets whose networks compute exactly what each library's networks compute.
# timm's own mobilenetv3_* use the timm preset; its tf_mobilenetv3_* ports use the paper preset.
LIBRARY_PRESETS: dict[Library, tuple[Preset, ...]] = {
    Library.TORCHVISION: (Preset.TORCHVISION,),
    Library.TIMM: (Preset.TIMM, Preset.PAPER),
    Library.KERAS: (Preset.KERAS,),
}


@dataclass
class Mapped:
    """Tensors renamed (and reshaped) to mnv3's state-dict layout, with where each came from."""

    library: Library
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # mnv3 key -> name in the source file

    def put(self, key: str, tensor: torch.Tensor, origin: str) -> None:
        """Record one tensor; a key mapped twice means the source walk is wrong."""
        if key in self.tensors:
            raise ValueError(f"internal error: {origin} and {self.origin[key]} both map to {key}")
        self.tensors[key] = tensor
        self.origin[key] = origin

    def take(self, dst: str, state: Mapping[str, torch.Tensor], src: str, params: tuple[str, ...], used: set[str]) -> None:
        """``{src}.{p}`` of ``state`` as ``{dst}.{p}`` for each of ``params``, adding the source keys to ``used``."""
        for p in params:
            self.put(f"{dst}.{p}", state[f"{src}.{p}"], f"{src}.{p}")
            used.add(f"{src}.{p}")

    def put_bn(self, prefix: str, bn: Mapping[str, torch.Tensor], origin: Mapping[str, str]) -> None:
        """A BatchNorm's affine parameters and running statistics under ``{prefix}.bn``."""
        for f in BN_FIELDS:
            self.put(f"{prefix}.bn.{f}", bn[f], origin[f])
        tracked = bn.get("num_batches_tracked")
        self.put(
            f"{prefix}.bn.num_batches_tracked",
            tracked if tracked is not None else torch.tensor(0, dtype=torch.long),
            origin.get("num_batches_tracked", "(not stored; 0)"),
        )

    def put_conv_bn(self, dst: str, state: Mapping[str, torch.Tensor], conv: str, bn: str, used: set[str]) -> None:
        """A PyTorch conv kernel ``{conv}.weight`` and the BN under ``{bn}.`` as ``{dst}.conv`` / ``{dst}.bn``.

        The BN copy every PyTorch-layout converter (torchvision, timm) shares; ``used`` collects the
        source keys taken, so the caller can refuse keys left over.
        """
        self.put(f"{dst}.conv.weight", state[f"{conv}.weight"], f"{conv}.weight")
        used.add(f"{conv}.weight")
        fields = (*BN_FIELDS, "num_batches_tracked")
        tensors = {f: state[f"{bn}.{f}"] for f in fields if f"{bn}.{f}" in state}
        self.put_bn(dst, tensors, {f: f"{bn}.{f}" for f in fields})
        used.update(f"{bn}.{f}" for f in tensors)

    @property
    def num_classes(self) -> int:
        """Classifier size of the checkpoint (0 when it has no classifier); a detector's classes per anchor, background included; a segmenter's classes."""
        cls, box = self.tensors.get("cls_head.0.pred.weight"), self.tensors.get("box_head.0.pred.weight")
        if cls is not None and box is not None:  # SSDLite: (classes x anchors) and (4 x anchors) outputs on the first map
            return int(cls.shape[0]) * 4 // int(box.shape[0])
        w = next((self.tensors[k] for k in SEGMENTATION_CLASS_KEYS if k in self.tensors), self.tensors.get("classifier.weight"))
        return 0 if w is None else int(w.shape[0])

    @property
    def is_detector(self) -> bool:
        """Whether the checkpoint holds an SSDLite detector (paper §6.3) rather than a classifier."""
        return "cls_head.0.pred.weight" in self.tensors

    @property
    def in_chans(self) -> int:
        w = self.tensors.get("stem.conv.weight")
        return 3 if w is None else int(w.shape[1])


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of the network of ``spec`` (classifier or SSDLite), in its order.

    Read off the real module built on the meta device (no memory, no initialisation), so it can
    never drift from the model.
    """
    with torch.device("meta"):
        model = build_network(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mismatches(mapped: Mapped, spec: ModelSpec) -> list[str]:
    """Every difference between the mapped checkpoint and ``spec``'s state dict, in model order."""
    expected = expected_shapes(spec)
    problems: list[str] = []
    for key, shape in expected.items():
        if key not in mapped.tensors:
            problems.append(f"{key} {list(shape)} is missing from the checkpoint")
        elif tuple(mapped.tensors[key].shape) != shape:
            got = list(mapped.tensors[key].shape)
            problems.append(f"{mapped.origin[key]} has shape {got}, but {key} needs {list(shape)}")
    for key in mapped.tensors:
        if key not in expected:
            problems.append(f"{mapped.origin[key]} (-> {key} {list(mapped.tensors[key].shape)}) has no place in the model")
    return problems


def _fits(mapped: Mapped, spec: ModelSpec) -> bool:
    expected = expected_shapes(spec)
    return expected.keys() == mapped.tensors.keys() and all(tuple(mapped.tensors[k].shape) == s for k, s in expected.items())


def fitting_models(mapped: Mapped, presets: Iterable[Preset] | None = None) -> list[tuple[str, Preset]]:
    """Registered (model name, preset) pairs whose state dict has exactly the checkpoint's keys and shapes."""
    presets = tuple(presets) if presets is not None else LIBRARY_PRESETS[mapped.library]
    found: list[tuple[str, Preset]] = []
    for name in list_models():
        for preset in presets:
            try:
                spec = build_spec(name, preset=preset, num_classes=mapped.num_classes, in_chans=mapped.in_chans)
            except ValueError:
                continue
            if _fits(mapped, spec):
                found.append((name, preset))
    return found


def check_fits(mapped: Mapped, spec: ModelSpec, *, show: int = 3) -> None:
    """Raise ValueError naming the first mismatching tensors and the registered models that would fit."""
    problems = mismatches(mapped, spec)
    if not problems:
        return
    fits = fitting_models(mapped)
    if fits:
        names = sorted({n for n, _ in fits})
        hint = f"The checkpoint fits {', '.join(names)}: pass that model name (e.g. --model {names[0]})."
    else:
        hint = "No registered model fits it; is it a MobileNetV3 checkpoint of this library?"
    shown = "; ".join(problems[:show])
    more = f" (and {len(problems) - show} more)" if len(problems) > show else ""
    raise ValueError(
        f"this {mapped.library.value} checkpoint does not fit {spec.name} "
        f"(blocks: {len(spec.blocks)}, classes: {spec.num_classes}): {shown}{more}. {hint}"
    )


def numerics_match(spec: ModelSpec, library: Library) -> bool:
    """Whether ``spec``'s conventions compute what ``library``'s networks compute (padding, BN eps)."""
    c = spec.conventions
    return any(
        (c.padding, c.bn_eps) == (get_preset(p).padding, get_preset(p).bn_eps) for p in LIBRARY_PRESETS[library]
    )


def group_by_index(state: Mapping[str, torch.Tensor], prefix: str) -> dict[int, dict[str, torch.Tensor]]:
    """``{prefix}{i}.{rest}`` keys grouped as {i: {rest: tensor}} (numeric i only)."""
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        head, _, rest = key[len(prefix) :].partition(".")
        if head.isdigit() and rest:
            groups.setdefault(int(head), {})[rest] = value
    return groups
