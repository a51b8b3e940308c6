"""ImageNet-1k class names, taken from torchvision's public weights metadata (not a private module); COCO's from :mod:`mnv3.weights.categories`."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def imagenet_categories() -> list[str]:
    """The 1000 class names in the usual synset order, which torchvision, timm and Keras all use."""
    from torchvision.models import MobileNet_V3_Large_Weights

    return list(MobileNet_V3_Large_Weights.IMAGENET1K_V1.meta["categories"])


@lru_cache(maxsize=1)
def coco_categories() -> list[str]:
    """COCO's 91 detection labels (background and unused ids included), as torchvision's SSDLite weights number them."""
    from mnv3.weights.categories import COCO_CATEGORIES

    return list(COCO_CATEGORIES)
