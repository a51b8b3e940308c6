"""What a network's weights expect of an image: resize / crop, interpolation, normalisation.

Stored with every set of weights (mnv3 files, named entries, training runs) and read by the one
input pipeline, :func:`mnv3.data.transforms.eval_transform`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preprocessing:
    """What the weights expect: resize / crop, interpolation, and normalisation.

    ``mean``/``std`` are in [0, 1] pixel units; Keras' [-1, 1] scaling is mean 0.5, std 0.5.
    """

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    grayscale: bool = False  # convert input images to one channel (Fashion-MNIST models)
    # resize the shorter side to ``resize`` and keep the whole image, no crop (torchvision's SemanticSegmentation);
    # ``crop`` is then only the nominal square resolution (export, bench)
    keep_aspect: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    def for_channels(self, n: int) -> Preprocessing:
        """This preprocessing for ``n`` channels: mean / std averaged over channels if their count differs, grayscale for 1."""
        if len(self.mean) == n:
            return self
        mean, std = sum(self.mean) / len(self.mean), sum(self.std) / len(self.std)
        return dataclasses.replace(self, mean=(mean,) * n, std=(std,) * n, grayscale=n == 1)


IMAGENET = Preprocessing()
INCEPTION = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # TF / Keras [-1, 1] scaling
