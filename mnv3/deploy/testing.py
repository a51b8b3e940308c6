"""A random network whose logits depend on its input, for export parity and int8 agreement tests.

Freshly initialised (or ``randomize_``-d) MobileNetV3s map every image to nearly the same logits:
BN statistics that do not match the activations shrink the signal block after block, and what
reaches the classifier is its bias. A parity test on such a network compares constants and an
agreement test counts ties. :func:`lively_` sets every BN's statistics from real forward passes
(as training would) and gives the linear layers O(1) gains, so logits vary from image to image.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def lively_(model: nn.Module, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """BN statistics measured on ``images``, random BN affine terms (gamma in [0.5, 1], beta ~ 0.1), unit-gain linear layers; eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in model.modules():
        if isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the passes below
        bn.weight.copy_(torch.rand(bn.num_features, generator=g) * 0.5 + 0.5)
        bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
    model.train()
    for _ in range(2):
        model(images)
    for bn, mom in zip(bns, momenta, strict=True):
        bn.momentum = mom
    return model.eval()
