"""Helpers for checking converters side by side: randomise every weight a converter must carry.

A converter test that ran on freshly initialised networks would miss a dropped BN statistic or
bias (they start at 0 / 1); these give every BN its own running mean / variance, gamma and beta,
every bias a random value, and every Linear a unit-variance output scale, so a wrong map shows.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, linear_gain: float = 1.0) -> nn.Module:
    """Random BN statistics and affine parameters, random biases, Linear weights of std gain/sqrt(fan-in); eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
        elif isinstance(m, nn.Linear):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * linear_gain / math.sqrt(m.in_features))
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()
