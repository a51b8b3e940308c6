"""Export-ready copies of a network: BatchNorm folded, SE gate folded for runtimes without hard-sigmoid.

Both rewrites are exact in real arithmetic (float rounding only) and leave the caller's model
untouched. Folding BN into the preceding conv removes one op per conv (paper §5: every layer is
conv-BN-act). Hard-sigmoid (§5.2) is ``clamp(x / 6 + 1/2, 0, 1)``; on XNNPACK, which has no native
hard-sigmoid, the exporters decompose it into add / clamp / div with scalar constants that stay
outside the delegate (LiteRT keeps a MUL by 1/6 per gate). Moving the ``+3`` into the SE's second
1x1 conv and the ``1/6`` into the projection conv leaves a ReLU6 that both fuse into the conv
before it: no decomposed op remains.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from mnv3.blocks.inverted_residual import InvertedResidual
from mnv3.blocks.layers import ConvBnAct, SqueezeExcite
from mnv3.models.lraspp import LRASPPHead


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> int:
    """Fold every ConvBnAct's BatchNorm into its conv, in place (eval statistics); returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, ConvBnAct) and isinstance(m.bn, nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv.eval(), m.bn.eval())
            m.bn = nn.Identity()
            n += 1
    return n


@torch.no_grad()
def fold_se_gate_(model: nn.Module) -> int:
    """Rewrite each SE gate as a ReLU6 fused into fc2, with the 1/6 moved into the projection conv, in place.

    ``project(x * hardsigmoid(z)) = project'(x * relu6(z + 3))`` with ``project' = project / 6``
    (the projection is linear in its input). The +3 goes into fc2's bias; ReLU6 is a clamp every
    mobile runtime fuses into the conv before it, so the gate costs no op of its own.
    """
    n = 0
    for block in model.modules():
        if not isinstance(block, InvertedResidual) or block.se is None or not isinstance(block.se.gate, nn.Hardsigmoid):
            continue
        fc2 = block.se.fc2
        if fc2.bias is None:
            fc2.bias = nn.Parameter(torch.zeros(fc2.out_channels, dtype=fc2.weight.dtype))
        fc2.bias.add_(3.0)
        block.se.gate = nn.ReLU6()
        block.project.conv.weight.div_(6.0)
        n += 1
    return n


def export_ready(model: nn.Module, *, fold_gate: bool = False) -> nn.Module:
    """A folded eval-mode copy for export: BN in the convs; with ``fold_gate`` the SE gates as clamps."""
    ready = copy.deepcopy(model).eval()
    fold_batchnorm_(ready)
    if fold_gate:
        fold_se_gate_(ready)
    return ready


@dataclass(frozen=True)
class ExpectedOps:
    """Op counts an exported MobileNetV3 graph must show, derived from the network's modules.

    ``hardswish`` and ``hardsigmoid`` are the paper's h-swish / h-sigmoid layers (§5.2), which the
    exported graph must keep whole; ``residual_adds`` is the only legitimate elementwise add;
    ``relu6`` counts SSDLite's ReLU6 layers (§6.3; none in a classifier), the only legitimate clamps;
    ``sigmoids``, ``head_adds`` and ``head_muls`` are LR-ASPP's gate, skip sum and gating product (§6.4,
    Figure 10). ``litert_partitions``: LiteRT's XNNPACK delegate takes LR-ASPP's 1/8 skip branch as a
    second subgraph (every op still delegated), so a segmenter may show two.
    """

    convs: int
    hardswish: int
    hardsigmoid: int
    relu: int
    se: int
    residual_adds: int
    linears: int
    relu6: int = 0
    sigmoids: int = 0
    head_adds: int = 0
    head_muls: int = 0
    litert_partitions: int = 1

    @classmethod
    def of(cls, model: nn.Module) -> ExpectedOps:
        mods = list(model.modules())
        lraspp = sum(isinstance(m, LRASPPHead) for m in mods)
        return cls(
            convs=sum(isinstance(m, nn.Conv2d) for m in mods),
            hardswish=sum(isinstance(m, nn.Hardswish) for m in mods),
            hardsigmoid=sum(isinstance(m, nn.Hardsigmoid) for m in mods),
            relu=sum(isinstance(m, nn.ReLU) for m in mods),
            se=sum(isinstance(m, SqueezeExcite) for m in mods),
            residual_adds=sum(isinstance(m, InvertedResidual) and m.use_residual for m in mods),
            linears=sum(isinstance(m, nn.Linear) for m in mods),
            relu6=sum(isinstance(m, nn.ReLU6) for m in mods),
            sigmoids=sum(isinstance(m, nn.Sigmoid) for m in mods),
            head_adds=lraspp,
            head_muls=lraspp,
            litert_partitions=2 if lraspp else 1,
        )
