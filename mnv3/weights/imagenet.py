"""ImageNet-1k class names, taken from torchvision's public weights metadata (not a private module)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_categories() -> list[str]:
    """The 1000 class names in the usual synset order, which torchvision, timm and Keras all use."""
    from torchvision.models import MobileNet_V3_Large_Weights

    return list(MobileNet_V3_Large_Weights.IMAGENET1K_V1.meta["categories"])
