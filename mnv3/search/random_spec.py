"""Random MobileNetV3-like specs for benchmarking latency predictors (the per-block choices of paper §4's search space).

Starting from Table 1 or 2, every bottleneck draws its kernel (3 / 5), SE on or off, and its
expansion and output widths scaled by a factor from a small set, rounded with the spec's divisor;
strides, activations and the number of blocks stay. Widths are concrete, so the result is a valid
:class:`~mnv3.spec.types.ModelSpec` any mnv3 tool builds.
"""

from __future__ import annotations

import dataclasses
import random

from mnv3.spec.tables import LARGE, SMALL
from mnv3.spec.transforms import make_divisible
from mnv3.spec.types import ModelSpec

FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25)


def random_spec(seed: int, *, base: ModelSpec | None = None, factors: tuple[float, ...] = FACTORS) -> ModelSpec:
    """A spec from ``base`` (default: Large or Small, by the seed) with random per-block kernel, SE and widths."""
    rng = random.Random(seed)
    base = base if base is not None else (LARGE if rng.random() < 0.5 else SMALL)
    d = base.conventions.divisor
    blocks = []
    out_scale = [rng.choice(factors) for _ in base.blocks]
    for i, b in enumerate(base.blocks):
        out = make_divisible(b.out * out_scale[i], d)
        exp = make_divisible(b.exp * rng.choice(factors), d)
        blocks.append(dataclasses.replace(b, kernel=rng.choice((3, 5)), se=rng.random() < 0.5, exp=exp, out=out))
    head = dataclasses.replace(base.head, conv_out=make_divisible(base.head.conv_out * rng.choice(factors), d))
    return base.replace(name=f"random{seed}-{base.name}", blocks=tuple(blocks), head=head, origin=None)
