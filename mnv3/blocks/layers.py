"""Building layers: conv + BN + activation with symmetric or TF 'SAME' padding, and squeeze-excite."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mnv3.spec.types import Activation, Conventions, Padding


def make_activation(act: Activation | None) -> nn.Module:
    """nn.ReLU / nn.Hardswish for the paper's RE / HS (§5.2); Identity for a linear layer."""
    if act is None:
        return nn.Identity()
    if act is Activation.RELU:
        return nn.ReLU(inplace=True)
    if act is Activation.HSWISH:
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {act!r}; expected one of {[a.value for a in Activation]}")


class SamePad2d(nn.Module):
    """TensorFlow 'SAME' padding for a strided conv: extra row/column at the bottom/right.

    Computed from the input size at run time so any resolution matches TF-slim and Keras.
    """

    def __init__(self, kernel: int, stride: int, dilation: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def pads(self, size: int) -> tuple[int, int]:
        """(before, after) padding of one spatial dimension of ``size`` pixels."""
        out = math.ceil(size / self.stride)
        total = max((out - 1) * self.stride + (self.kernel - 1) * self.dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self.pads(x.shape[-2])
        left, right = self.pads(x.shape[-1])
        return F.pad(x, (left, right, top, bottom))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, dilation={self.dilation}"


class ConvBnAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; the unit every MobileNetV3 layer is made of."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        conventions: Conventions,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        act: Activation | None = None,
    ) -> None:
        super().__init__()
        same_strided = conventions.padding is Padding.TF_SAME and stride > 1
        # a stride-1 odd kernel pads symmetrically under both conventions
        self.pad = SamePad2d(kernel, stride, dilation) if same_strided else nn.Identity()
        padding = 0 if same_strided else (kernel - 1) // 2 * dilation
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=conventions.bn_eps, momentum=conventions.bn_momentum)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class SqueezeExcite(nn.Module):
    """Squeeze-excite on the expansion (paper §5.3, Fig. 4): pool, 1x1 + ReLU, 1x1 + hard-sigmoid, scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))
