"""The typed segmentation head spec (paper §6.4): LR-ASPP, or the R-ASPP baseline of Table 7, on the 1/16 feature.

An :class:`LRASPPSpec` on a :class:`~mnv3.spec.types.ModelSpec` (field ``segmentation``) turns the
backbone into a segmenter; its presets (``paper``: the paper's Figure 10 head with TF DeepLab's
``models/research/deeplab`` settings; ``torchvision``:
``torchvision/models/segmentation/lraspp.py``) live in :mod:`mnv3.spec.conventions`. The pooling of
the gating branch is set by ``pool`` (fixed kernel, a rule scaling it with the input, or global),
documented in docs/segmentation.md with what each does to an arbitrary input size and to export.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SegmentationHead(str, Enum):
    """Which head runs on the 1/16 feature (paper Table 7, column SH)."""

    LRASPP = "lraspp"  # Lite R-ASPP (§6.4, Figure 10): 1x1 branch gated by a pooled sigmoid branch, plus a 1/8 skip
    RASPP = "raspp"  # reduced ASPP (MobileNetV2's DeepLabv3 head): 1x1 branch + image pooling branch, concat, projection


class PoolMode(str, Enum):
    """How the pooling branch pools the 1/16 feature (paper Figure 10: 49x49, stride (16, 20) at 1024x2048).

    FIXED: ``pool_kernel`` / ``pool_stride`` as given; a side of the map smaller than the kernel is
    pooled whole (the kernel is clipped to it). SCALED: kernel and stride scaled by
    input size / ``pool_reference_size``, so every input gets the pooled grid the paper gets at its
    size. GLOBAL: one average over the map (torchvision's ``AdaptiveAvgPool2d(1)``).
    """

    FIXED = "fixed"
    SCALED = "scaled"
    GLOBAL = "global"


class LowLevelFeature(str, Enum):
    """Which 1/8 feature the LR-ASPP skip classifies (paper §6.4: "the 1/8 low-level feature").

    LAST_DEPTHWISE: the depthwise output of the last block at 1/8 (TF DeepLab ``layer_7`` / ``layer_4``
    ``/depthwise_output``: Large block 6, 120 channels; Small block 3, 88). FIRST_BLOCK_OUTPUT: the
    output of the block that enters 1/8 (torchvision: Large block 4, 40 channels; Small block 2, 24).
    """

    LAST_DEPTHWISE = "last_depthwise"
    FIRST_BLOCK_OUTPUT = "first_block_output"


class Gate(str, Enum):
    """The pooling branch's gate: sigmoid (paper Figure 10, torchvision) or hard sigmoid (TF DeepLab ``image_se_uses_qsigmoid``)."""

    SIGMOID = "sigmoid"
    HARD_SIGMOID = "hard_sigmoid"


@dataclass(frozen=True)
class LRASPPSpec:
    """The segmentation head of §6.4 (LR-ASPP) or Table 7's R-ASPP baseline, on the backbone's last 1x1 conv.

    ``inter_channels`` is F of Table 7 (128 for the chosen LR-ASPP, 256 for R-ASPP). The low-level
    skip (``low_level``, at ``low_level_stride``) and the gate are LR-ASPP's; R-ASPP has no skip.
    The head's BatchNorms use ``bn_eps`` / ``bn_momentum`` (PyTorch meaning); the backbone keeps the
    conventions' own. The class count is the spec's ``num_classes``.
    """

    head: SegmentationHead = SegmentationHead.LRASPP
    inter_channels: int = 128
    low_level: LowLevelFeature = LowLevelFeature.LAST_DEPTHWISE
    low_level_stride: int = 8
    pool: PoolMode = PoolMode.FIXED
    pool_kernel: tuple[int, int] = (49, 49)  # (height, width), paper Figure 10
    pool_stride: tuple[int, int] = (16, 20)
    pool_reference_size: tuple[int, int] = (1024, 2048)  # the input (H, W) the fixed kernel and stride are drawn for
    gate: Gate = Gate.SIGMOID
    bn_eps: float = 1e-5
    bn_momentum: float = 0.0003  # TF DeepLab: decay 0.9997


def pool_geometry(seg: LRASPPSpec, input_size: tuple[int, int], feature_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(kernel, stride) of the pooling branch for an input and its 1/16 map; None for global pooling (§6.4, docs/segmentation.md)."""
    if seg.pool is PoolMode.GLOBAL:
        return None
    if seg.pool is PoolMode.FIXED:
        kernel, stride = seg.pool_kernel, seg.pool_stride
    else:
        ratio = [s / r for s, r in zip(input_size, seg.pool_reference_size, strict=True)]
        kernel = tuple(max(1, round(k * q)) for k, q in zip(seg.pool_kernel, ratio, strict=True))  # type: ignore[assignment]
        stride = tuple(max(1, round(s * q)) for s, q in zip(seg.pool_stride, ratio, strict=True))  # type: ignore[assignment]
    kernel = (min(kernel[0], feature_size[0]), min(kernel[1], feature_size[1]))
    return kernel, (stride[0], stride[1])


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def validate_segmentation(s: LRASPPSpec) -> None:
    """Raise ValueError naming the bad segmentation field, what was given and what is allowed."""
    for name, enum in (("head", SegmentationHead), ("pool", PoolMode), ("low_level", LowLevelFeature), ("gate", Gate)):
        _check(isinstance(getattr(s, name), enum), f"segmentation.{name} must be one of {[e.value for e in enum]}, got {getattr(s, name)!r}")
    _check(isinstance(s.inter_channels, int) and s.inter_channels >= 1, f"segmentation.inter_channels must be a positive integer, got {s.inter_channels!r}")
    _check(s.low_level_stride in (2, 4, 8, 16), f"segmentation.low_level_stride must be 2, 4, 8 or 16, got {s.low_level_stride}")
    for name in ("pool_kernel", "pool_stride", "pool_reference_size"):
        v = getattr(s, name)
        _check(len(v) == 2 and all(isinstance(x, int) and x >= 1 for x in v), f"segmentation.{name} must be two positive integers (height, width), got {list(v)}")
    _check(s.bn_eps > 0, f"segmentation.bn_eps must be > 0, got {s.bn_eps}")
    _check(0 <= s.bn_momentum <= 1, f"segmentation.bn_momentum must be in [0, 1], got {s.bn_momentum}")
