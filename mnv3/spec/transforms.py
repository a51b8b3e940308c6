"""Pure functions from spec to spec: width multiplier, minimalistic, reduced tail, output stride.

Each returns a new validated :class:`ModelSpec`; none mutates its input. The rules follow the
official TF-slim implementation unless the spec's conventions say otherwise (tensorflow/models research/slim/nets/mobilenet/mobilenet_v3.py; paper §6.3-6.4).
"""

from __future__ import annotations

import dataclasses

from mnv3.spec.detection import SSDLiteSpec
from mnv3.spec.types import (
    Activation,
    AtrousStyle,
    BlockSpec,
    HeadScaling,
    ModelSpec,
    StemScaling,
    WidthRounding,
    validate,
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to the nearest multiple of divisor, never below min_value or 90% of value (TF-slim rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def squeeze_width(spec: ModelSpec, exp: int) -> int:
    """SE bottleneck width: 1/4 of the expansion, rounded to the divisor (paper §5.3)."""
    c = spec.conventions
    return make_divisible(exp * c.se_ratio, c.divisor)


def scale_width(spec: ModelSpec, multiplier: float, *, head_hidden: int | None = None) -> ModelSpec:
    """Apply a width multiplier with the spec's conventions (TF-slim's mobilenet_v3.py; docs/architecture.md).

    ``head_hidden`` overrides the hidden head width that the head-scaling convention would give.
    """
    if not (isinstance(multiplier, (int, float)) and multiplier > 0):
        raise ValueError(f"width multiplier must be a positive number (the paper uses 0.35-1.25), got {multiplier!r}")
    c = spec.conventions
    d = c.divisor

    def scaled(v: int) -> int:
        return make_divisible(v * multiplier, d)

    if c.stem_scaling is StemScaling.SCALED:
        stem_out = scaled(spec.stem.out)
    elif c.stem_scaling is StemScaling.SCALED_FROM_075 and multiplier >= 0.75:
        stem_out = scaled(spec.stem.out)
    else:
        stem_out = spec.stem.out

    blocks: list[BlockSpec] = []
    nominal_in, actual_in = spec.stem.out, stem_out
    for b in spec.blocks:
        out = scaled(b.out)
        if c.expansion_rounding is WidthRounding.RATIO_OF_ROUNDED_INPUT:
            exp = make_divisible(actual_in * b.exp / nominal_in, d)
        else:
            exp = scaled(b.exp)
        blocks.append(dataclasses.replace(b, exp=exp, out=out))
        nominal_in, actual_in = b.out, out

    if c.head_conv_rounding is WidthRounding.RATIO_OF_ROUNDED_INPUT:
        conv_out = make_divisible(actual_in * spec.head.conv_out / nominal_in, d)
    else:
        conv_out = scaled(spec.head.conv_out)
    if head_hidden is not None:
        hidden = head_hidden
    elif spec.head.hidden == 0:
        hidden = 0  # no hidden layer (MnasNet's head) stays none
    elif c.head_scaling is HeadScaling.SCALED or (c.head_scaling is HeadScaling.SCALED_ABOVE_ONE and multiplier > 1):
        hidden = scaled(spec.head.hidden)
    else:
        hidden = spec.head.hidden

    return spec.replace(
        stem=dataclasses.replace(spec.stem, out=stem_out),
        blocks=tuple(blocks),
        head=dataclasses.replace(spec.head, conv_out=conv_out, hidden=hidden),
        detection=_scale_extras(spec, multiplier),
    )


def _scale_extras(spec: ModelSpec, multiplier: float) -> SSDLiteSpec | None:
    """SSDLite's extra layers under the multiplier: ``max(int(d * w), min_depth)`` (TF OD API depth_fn), or kept."""
    d = spec.detection
    if d is None or not d.scale_extras:
        return d

    def depth(v: int) -> int:
        return max(int(v * multiplier), d.min_depth)

    return dataclasses.replace(
        d, extra_depths=tuple(depth(v) for v in d.extra_depths), extra_mid_depths=tuple(depth(v) for v in d.extra_mid_depths)
    )


def minimalistic(spec: ModelSpec) -> ModelSpec:
    """No SE, ReLU everywhere, 3x3 depthwise kernels (TF-slim / Keras 'minimalistic', keras/src/applications/mobilenet_v3.py)."""
    return spec.replace(
        stem=dataclasses.replace(spec.stem, act=Activation.RELU),
        blocks=tuple(dataclasses.replace(b, kernel=3, se=False, act=Activation.RELU) for b in spec.blocks),
        head=dataclasses.replace(spec.head, act=Activation.RELU),
    )


def last_stage_start(spec: ModelSpec) -> int:
    """Index of the block that opens the last stage: the last stride-2 block (C4 -> C5)."""
    _require_undilated(spec, "finding the last stage")
    strided = [i for i, b in enumerate(spec.blocks) if b.stride == 2]
    if not strided:
        raise ValueError("the spec has no stride-2 block, so it has no last stage to reduce")
    return strided[-1]


def _require_undilated(spec: ModelSpec, what: str) -> None:
    if any(b.dilation != 1 for b in spec.blocks):
        raise ValueError(
            f"{what} needs an undilated spec (all dilation 1), but this one is dilated; "
            "apply output-stride changes last, to the undilated spec"
        )


def reduce_tail(spec: ModelSpec, *, halve_first_expansion: bool = False) -> ModelSpec:
    """Halve every layer between C4 and C5 (paper §6.3 '†' and §6.4 'RF2'; TF-slim's mobilenet_v3.py, TF DeepLab).

    Detection (SSDLite) keeps the first expansion of the last stage, because it is the C4 tap;
    segmentation (LR-ASPP RF2) halves it too: pass ``halve_first_expansion=True``.
    Apply before the width multiplier, as TF-slim and torchvision do.
    """
    start = last_stage_start(spec)
    d = spec.conventions.divisor
    blocks = list(spec.blocks)
    for i in range(start, len(blocks)):
        b = blocks[i]
        exp = b.exp if (i == start and not halve_first_expansion) else make_divisible(b.exp / 2, d)
        blocks[i] = dataclasses.replace(b, exp=exp, out=make_divisible(b.out / 2, d))
    hidden = spec.head.hidden // 2 if spec.conventions.reduced_tail_halves_hidden else spec.head.hidden
    head = dataclasses.replace(spec.head, conv_out=make_divisible(spec.head.conv_out / 2, d), hidden=hidden)
    return spec.replace(blocks=tuple(blocks), head=head)


def with_output_stride(spec: ModelSpec, output_stride: int) -> ModelSpec:
    """Keep the feature map at 1/output_stride by trading strides for atrous rates (TF-slim mobilenet_base).

    The spec's ``atrous_style`` says whether the block that loses its stride is dilated too
    (torchvision) or only the blocks after it (TF-slim). Takes an undilated spec.
    """
    _require_undilated(spec, "with_output_stride")
    valid = [2**k for k in range(1, 8) if spec.stem.stride <= 2**k <= spec.total_stride]
    if output_stride not in valid:
        raise ValueError(
            f"output_stride must be one of {valid} for this spec (total stride {spec.total_stride}), got {output_stride!r}"
        )
    torchvision_style = spec.conventions.atrous_style is AtrousStyle.TORCHVISION
    current, rate = spec.stem.stride, 1
    blocks: list[BlockSpec] = []
    for b in spec.blocks:
        if b.stride > 1 and current >= output_stride:
            rate_before = rate
            rate *= b.stride
            blocks.append(dataclasses.replace(b, stride=1, dilation=rate if torchvision_style else rate_before))
        else:
            current *= b.stride
            blocks.append(dataclasses.replace(b, dilation=rate))
    return spec.replace(blocks=tuple(blocks))


def with_classes(spec: ModelSpec, num_classes: int) -> ModelSpec:
    """Change the classifier size (0 removes the classifier)."""
    return spec.replace(num_classes=num_classes)


__all__ = [
    "make_divisible",
    "squeeze_width",
    "scale_width",
    "minimalistic",
    "reduce_tail",
    "with_output_stride",
    "with_classes",
    "last_stage_start",
    "validate",
]
