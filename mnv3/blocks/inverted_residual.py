"""The MobileNetV3 bottleneck (paper §3, §5): expand, depthwise, optional SE, linear projection."""

from __future__ import annotations

import torch
from torch import nn

from mnv3.blocks.layers import ConvBnAct, SqueezeExcite
from mnv3.spec.transforms import squeeze_width
from mnv3.spec.types import BlockSpec, ModelSpec


class InvertedResidual(nn.Module):
    """One row of Tables 1-2. The expansion output is exposed for SSDLite's C4 tap (§6.3).

    The 1x1 expansion is skipped when the expansion width equals the input width (block 1 of
    both models); the residual is used when stride is 1 and input and output widths match.
    """

    def __init__(self, in_ch: int, block: BlockSpec, spec: ModelSpec) -> None:
        super().__init__()
        c = spec.conventions
        self.in_ch, self.out_ch, self.exp_ch = in_ch, block.out, block.exp
        self.has_expansion = block.exp != in_ch
        self.expand = ConvBnAct(in_ch, block.exp, 1, c, act=block.act) if self.has_expansion else None
        self.dw = ConvBnAct(
            block.exp, block.exp, block.kernel, c, stride=block.stride, dilation=block.dilation, groups=block.exp, act=block.act
        )
        self.se = SqueezeExcite(block.exp, squeeze_width(spec, block.exp)) if block.se else None
        self.project = ConvBnAct(block.exp, block.out, 1, c, act=None)
        self.use_residual = block.stride == 1 and in_ch == block.out

    def forward_with_expansion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Block output and the expansion-layer output (the input itself when there is no expansion)."""
        e = self.expand(x) if self.expand is not None else x
        y = self.dw(e)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if self.use_residual:
            y = y + x
        return y, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_expansion(x)[0]
