"""Random test weights that show a wrong converter, export or quantisation: :func:`randomize_`.

A freshly initialised network hides a dropped BN statistic or bias (they start at 0 / 1), so
:func:`randomize_` gives every BN its own running mean / variance, gamma and beta, every bias a
random value and every Linear an O(1) output scale. Random BN statistics do not match the
activations, though: they shrink the signal block after block until every image gets nearly the
same logits (the classifier's bias). Export parity and int8 agreement tests need logits that vary
with the input, so ``images=`` replaces the drawn statistics with ones measured on those images
(train-mode forward passes, as training would).
"""

from __future__ import annotations

import math

import torch
from torch import nn

CALIBRATION_PASSES = 2


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, linear_gain: float = 1.0, images: torch.Tensor | None = None) -> nn.Module:
    """Random BN terms and biases, Linear weights of std gain/sqrt(fan-in), BN statistics measured on ``images`` if given."""
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
    if images is not None:
        _measure_bn_statistics_(model, images)
    return model.eval()


def _measure_bn_statistics_(model: nn.Module, images: torch.Tensor) -> None:
    """Every BN's running statistics set to their cumulative average over train-mode passes on ``images``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the passes below
    model.train()
    try:
        for _ in range(CALIBRATION_PASSES):
            model(images)
    finally:
        for bn, mom in zip(bns, momenta, strict=True):
            bn.momentum = mom
