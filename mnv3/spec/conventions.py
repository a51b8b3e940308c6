"""Convention presets that mirror each peer library exactly (docs/architecture.md, conventions table).

The converters of published weights rely on these: a checkpoint loads into an mnv3 model built
with the matching preset and produces the same logits.
"""

from __future__ import annotations

from enum import Enum

from mnv3.spec.types import AtrousStyle, Conventions, HeadScaling, Padding, StemScaling, WidthRounding


class Preset(str, Enum):
    """Named convention sets; PAPER (TF-slim, the official checkpoints) is the default."""

    PAPER = "paper"
    TORCHVISION = "torchvision"
    TIMM = "timm"
    KERAS = "keras"


PRESETS: dict[Preset, Conventions] = {
    # TF-slim as used for the paper: BN decay 0.99 (paper §6.1.1), eps 1e-3, SAME padding,
    # expansion = ratio of the rounded input, head hidden layer unscaled for multipliers <= 1
    # (this is what reproduces Table 9; docs/architecture.md). timm's tf_* ports share it.
    Preset.PAPER: Conventions(),
    # torchvision models/mobilenetv3.py: adjust_channels(c * width_mult) on every column,
    # BN eps 1e-3 momentum 0.01, symmetric padding, lastconv = 6 * rounded input.
    Preset.TORCHVISION: Conventions(
        bn_eps=1e-3,
        bn_momentum=0.01,
        padding=Padding.SYMMETRIC,
        stem_scaling=StemScaling.SCALED,
        head_scaling=HeadScaling.SCALED,
        expansion_rounding=WidthRounding.SCALE_NOMINAL,
        head_conv_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        atrous_style=AtrousStyle.TORCHVISION,
        reduced_tail_halves_hidden=True,
    ),
    # timm mobilenetv3_* (non-tf): PyTorch BN defaults, symmetric padding, stem fixed below
    # 0.75, head hidden layer never scaled, expansion from the rounded input (ir blocks).
    Preset.TIMM: Conventions(
        bn_eps=1e-5,
        bn_momentum=0.1,
        padding=Padding.SYMMETRIC,
        stem_scaling=StemScaling.SCALED_FROM_075,
        head_scaling=HeadScaling.FIXED,
        expansion_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        head_conv_rounding=WidthRounding.SCALE_NOMINAL,
        atrous_style=AtrousStyle.TF_SLIM,
    ),
    # keras.applications MobileNetV3: BN momentum 0.999 (PyTorch 0.001), eps 1e-3, TF padding
    # (ZeroPadding2D(correct_pad) equals SAME), stem fixed at 16, last_point_ch scaled only for
    # alpha > 1, last conv = _depth(6 * rounded input).
    Preset.KERAS: Conventions(
        bn_eps=1e-3,
        bn_momentum=0.001,
        padding=Padding.TF_SAME,
        stem_scaling=StemScaling.FIXED,
        head_scaling=HeadScaling.SCALED_ABOVE_ONE,
        expansion_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        head_conv_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        atrous_style=AtrousStyle.TF_SLIM,
    ),
}


def get_preset(preset: Preset | str) -> Conventions:
    """The Conventions of a preset given by enum or name; unknown names list the valid ones."""
    try:
        return PRESETS[Preset(preset)]
    except ValueError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {[p.value for p in Preset]}") from None
