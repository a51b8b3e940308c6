"""LR-ASPP segmentation on MobileNetV3 (paper §6.4), built from a :class:`ModelSpec` whose ``segmentation`` is set.

The head runs on the 1/16 feature: the backbone's last 1x1 conv (960 / 576, 480 / 288 with RF2),
with the last stage dilated (rate 2) at output stride 16. LR-ASPP (Figure 10): branch A = 1x1 conv
to F + BN + ReLU; branch B = average pool, 1x1 conv to F, sigmoid, bilinear upsample; A x B,
bilinear upsample to 1/8, 1x1 conv to the classes, plus a 1x1 conv to the classes of the 1/8
low-level feature; the sum is upsampled to the input. R-ASPP (Table 7's baseline): a 1x1 branch and
an image-pooling branch (both conv + BN + ReLU to F), concatenated, projected to F, classified.
torchvision's ``torchvision/models/segmentation/lraspp.py`` is the ``torchvision`` preset of it.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from mnv3.blocks import ConvBnAct, InvertedResidual
from mnv3.models.mobilenetv3 import SpecNetwork, backbone_layers, init_weights_
from mnv3.spec.segmentation import Gate, LowLevelFeature, LRASPPSpec, PoolMode, SegmentationHead, pool_geometry
from mnv3.spec.types import Activation, Conventions, ModelSpec, validate


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize, ``align_corners=False`` (torchvision's LRASPP; TF's ``resize_bilinear`` default); sizes stay symbolic under export."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def pool_branch_input(seg: LRASPPSpec, x: torch.Tensor, input_size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """The pooling branch's average pool of the 1/16 map ``x``: fixed, scaled or global (``seg.pool``; docs/segmentation.md)."""
    if seg.pool is PoolMode.GLOBAL:
        return F.adaptive_avg_pool2d(x, 1)  # no size-dependent constant in the graph
    geometry = pool_geometry(seg, (int(input_size[0]), int(input_size[1])), (int(x.shape[-2]), int(x.shape[-1])))
    assert geometry is not None
    kernel, stride = geometry
    return F.avg_pool2d(x, kernel, stride)  # VALID, as TF DeepLab's avg_pool2d


def low_level_tap(spec: ModelSpec) -> tuple[int, bool, int]:
    """(1-based block index, whether the tap is that block's depthwise output, channels) of LR-ASPP's skip; (0, False, 0) for R-ASPP."""
    seg = spec.segmentation
    assert seg is not None
    if seg.head is SegmentationHead.RASPP:
        return 0, False, 0
    stride, at = spec.stem.stride, []
    for i, b in enumerate(spec.blocks, start=1):
        stride *= b.stride
        if stride == seg.low_level_stride:
            at.append(i)
    if not at or stride <= seg.low_level_stride:
        raise ValueError(
            f"{spec.name}: LR-ASPP's low-level feature needs blocks at 1/{seg.low_level_stride} and a deeper 1/16 or 1/32 feature "
            f"(this backbone ends at 1/{stride})"
        )
    if seg.low_level is LowLevelFeature.FIRST_BLOCK_OUTPUT:
        return at[0], False, spec.blocks[at[0] - 1].out
    return at[-1], True, spec.blocks[at[-1] - 1].exp


def forward_with_depthwise(block: InvertedResidual, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block output and its depthwise output (after BN and activation, before SE): TF-slim's ``depthwise_output``."""
    e = block.expand(x) if block.expand is not None else x
    d = block.dw(e)
    y = block.project(block.se(d) if block.se is not None else d)
    return (y + x if block.use_residual else y), d


def _head_conventions(spec: ModelSpec) -> Conventions:
    seg = spec.segmentation
    assert seg is not None
    return dataclasses.replace(spec.conventions, bn_eps=seg.bn_eps, bn_momentum=seg.bn_momentum)


class LRASPPHead(nn.Module):
    """Lite R-ASPP (paper §6.4, Figure 10): a 1x1 branch gated by a pooled sigmoid branch, plus a 1/8 skip."""

    def __init__(self, spec: ModelSpec, low_channels: int) -> None:
        super().__init__()
        seg = spec.segmentation
        assert seg is not None
        self.seg = seg
        high, f, n = spec.head.conv_out, seg.inter_channels, spec.num_classes
        self.cbr = ConvBnAct(high, f, 1, _head_conventions(spec), act=Activation.RELU)
        self.scale = nn.Conv2d(high, f, 1, bias=False)
        self.gate: nn.Module = nn.Sigmoid() if seg.gate is Gate.SIGMOID else nn.Hardsigmoid()
        self.low_classifier = nn.Conv2d(low_channels, n, 1)
        self.high_classifier = nn.Conv2d(f, n, 1)

    def forward(self, low: torch.Tensor | None, high: torch.Tensor, input_size: torch.Size) -> torch.Tensor:
        assert low is not None
        x = self.cbr(high)
        s = self.gate(self.scale(pool_branch_input(self.seg, high, input_size)))
        if s.shape[-2:] != (1, 1):
            s = _resize(s, high.shape[-2:])  # a 1x1 gate broadcasts: the same values, as torchvision computes it
        x = _resize(x * s, low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


class RASPPHead(nn.Module):
    """Reduced ASPP (paper Table 7's baseline; MobileNetV2's DeepLabv3 head): 1x1 and image-pooling branches, projection, classifier."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        seg = spec.segmentation
        assert seg is not None
        self.seg = seg
        c = _head_conventions(spec)
        high, f = spec.head.conv_out, seg.inter_channels
        self.branch = ConvBnAct(high, f, 1, c, act=Activation.RELU)
        self.pool_branch = ConvBnAct(high, f, 1, c, act=Activation.RELU)
        self.project = ConvBnAct(2 * f, f, 1, c, act=Activation.RELU)
        self.classifier = nn.Conv2d(f, spec.num_classes, 1)

    def forward(self, low: torch.Tensor | None, high: torch.Tensor, input_size: torch.Size) -> torch.Tensor:
        pooled = _resize(self.pool_branch(pool_branch_input(self.seg, high, input_size)), high.shape[-2:])
        return self.classifier(self.project(torch.cat([self.branch(high), pooled], dim=1)))


class LRASPP(SpecNetwork):
    """MobileNetV3 + LR-ASPP (or R-ASPP) segmentation (paper §6.4): ``model(x)`` is the logits (N, C, H, W) at x's size.

    The backbone keeps the classifier's keys (``stem``, ``blocks``, ``head_conv``) so ImageNet weights
    line up; the head is ``seg_head.*``. The output is a tensor, not torchvision's ``{"out": ...}``
    (the segmentation task takes either).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        validate(spec)
        if spec.segmentation is None:
            raise ValueError(f"{spec.name} has no segmentation head spec; build classifiers with MobileNetV3")
        self.spec = spec
        self.stem, self.blocks, self.head_conv = backbone_layers(spec)
        self.low_index, self.low_is_depthwise, self.low_channels = low_level_tap(spec)
        self.seg_head: nn.Module = (
            RASPPHead(spec) if spec.segmentation.head is SegmentationHead.RASPP else LRASPPHead(spec, self.low_channels)
        )
        init_weights_(self)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The low-level 1/8 feature (None for R-ASPP) and the 1/16 (or 1/32) head-conv feature."""
        if not torch.jit.is_scripting():
            self.check_input(x)
        x = self.stem(x)
        low: torch.Tensor | None = None
        for i, block in enumerate(self.blocks, start=1):
            if i != self.low_index:
                x = block(x)
            elif self.low_is_depthwise:
                x, low = forward_with_depthwise(block, x)
            else:
                x = block(x)
                low = x
        return low, self.head_conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        low, high = self.forward_features(x)
        return _resize(self.seg_head(low, high, size), size)
