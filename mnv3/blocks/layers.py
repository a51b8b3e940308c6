"""Building layers: conv + BN + activation with symmetric or TF 'SAME' padding, and squeeze-excite."""

from __future__ import annotations

import functools
import math
import os
from typing import Literal

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


EXPLICIT_PAD_ENV = "MNV3_EXPLICIT_PAD"
ExplicitPad = Literal["off", "auto", "on"]


@functools.cache
def explicit_pad_setting() -> ExplicitPad:
    """``MNV3_EXPLICIT_PAD`` 0 -> "off", 1 -> "on"; unset -> "auto" where ATen's CPU capability is AVX2, else "off"."""
    value = os.environ.get(EXPLICIT_PAD_ENV, "").strip()
    if value in ("0", "1"):
        return "on" if value == "1" else "off"
    if value:
        raise ValueError(f"{EXPLICIT_PAD_ENV} must be 0 or 1, got {value!r}")
    return "auto" if torch.backends.cpu.get_cpu_capability() == "AVX2" else "off"


class ConvBnAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; the unit every MobileNetV3 layer is made of.

    ``explicit_pad`` (from :func:`explicit_pad_setting`): a symmetrically padded depthwise conv pads
    with ``F.pad`` and runs with padding 0 instead; the same zeros, so the same outputs, gradients
    and state_dict. With oneDNN's AVX2 kernels that moves the weight gradient of a conv whose map is
    smaller than its kernel (the 5x5 convs on 4x4 and 2x2 maps at 64 px) from ``gemm:jit`` to
    ``jit:avx2``, 2-3x faster; on larger maps, dilated, in eval, or with AVX-512 kernels it is
    slower or no faster (docs/training.md, "Where the time goes (AVX2 vs AVX-512)"). "auto" pads
    just those small-map undilated convs, "on" every one; both only in training mode, on CPU
    tensors, outside ``torch.compile`` / ``torch.export``, so exported graphs keep the padded conv.
    """

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
        setting = explicit_pad_setting() if groups == in_ch == out_ch > 1 and padding > 0 else "off"
        self.explicit_pad: ExplicitPad = "off" if setting == "auto" and dilation > 1 else setting

    def _pads_explicitly(self, x: torch.Tensor) -> bool:
        """Whether this call runs the conv as ``F.pad`` + padding 0 (see the class docstring)."""
        if self.explicit_pad == "off" or not self.training or x.device.type != "cpu" or torch.compiler.is_compiling():
            return False
        k = self.conv.kernel_size
        return self.explicit_pad == "on" or x.shape[-2] < k[0] or x.shape[-1] < k[1]

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        """The conv, padded by ``F.pad`` when :meth:`_pads_explicitly` says so."""
        conv = self.conv
        if not self._pads_explicitly(x):
            return conv(x)
        p = conv.padding
        x = F.pad(x, (p[1], p[1], p[0], p[0]))
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self._conv(self.pad(x))))


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
