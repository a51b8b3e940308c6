"""Named feature endpoints with channels and strides known before any forward pass (TF-slim style)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from mnv3.spec.types import ModelSpec


class TapKind(str, Enum):
    """A block's output, or the output of its 1x1 expansion layer (before the depthwise conv)."""

    OUTPUT = "output"
    EXPANSION = "expansion"


@dataclass(frozen=True)
class FeatureInfo:
    """One tap: its name, width, output stride, and where it is taken."""

    name: str
    channels: int
    stride: int
    kind: TapKind
    index: int  # 0 = stem, 1..N = bottleneck blocks, N+1 = head conv


def feature_info(spec: ModelSpec) -> list[FeatureInfo]:
    """Every tap of the backbone in forward order, computed from the spec alone.

    Names: ``stem``, ``block{i}`` (1-based as in the paper's tables), ``block{i}.expansion``
    and ``head_conv`` (the 960 / 576 layer, C5). SSDLite's C4 is ``block13.expansion`` in
    Large and ``block9.expansion`` in Small (paper §6.3).
    """
    stride = spec.stem.stride
    infos = [FeatureInfo("stem", spec.stem.out, stride, TapKind.OUTPUT, 0)]
    in_ch = spec.stem.out
    for i, b in enumerate(spec.blocks, start=1):
        if b.exp != in_ch:
            infos.append(FeatureInfo(f"block{i}.expansion", b.exp, stride, TapKind.EXPANSION, i))
        stride *= b.stride
        infos.append(FeatureInfo(f"block{i}", b.out, stride, TapKind.OUTPUT, i))
        in_ch = b.out
    infos.append(FeatureInfo("head_conv", spec.head.conv_out, stride, TapKind.OUTPUT, len(spec.blocks) + 1))
    return infos


def pyramid_names(spec: ModelSpec, strides: tuple[int, ...] = (4, 8, 16, 32)) -> dict[int, str]:
    """The last block output at each output stride (the usual C2-C5 pyramid; head_conv for the deepest)."""
    last: dict[int, str] = {}
    for info in feature_info(spec):
        if info.kind is TapKind.OUTPUT:
            last[info.stride] = info.name
    missing = [s for s in strides if s not in last]
    if missing:
        raise ValueError(f"this network has no features at stride(s) {missing}; available strides: {sorted(last)}")
    return {s: last[s] for s in strides}


def expansion_names(spec: ModelSpec) -> dict[int, str]:
    """For each stride, the expansion tap of the block that leaves it (e.g. C4 at stride 16)."""
    taps: dict[int, str] = {}
    in_ch, stride = spec.stem.out, spec.stem.stride
    for i, b in enumerate(spec.blocks, start=1):
        if b.stride > 1 and b.exp != in_ch:
            taps[stride] = f"block{i}.expansion"
        stride *= b.stride
        in_ch = b.out
    return taps
