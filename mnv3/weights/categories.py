"""Category lists of published weights, copied as data (no private torchvision attribute is read at run time).

COCO's 91 detection labels and PASCAL VOC's 21 segmentation labels are copied from torchvision's
``torchvision/models/_meta.py`` (``_COCO_CATEGORIES``, ``_VOC_CATEGORIES``: the ``categories`` of
``SSDLite320_MobileNet_V3_Large_Weights.COCO_V1`` and ``LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1``;
tests compare them with the installed torchvision). The ImageNet-1k names come from torchvision's
public weights meta (:mod:`mnv3.weights.imagenet`).
"""

from __future__ import annotations

from enum import Enum

# fmt: off
# torchvision/models/_meta.py _COCO_CATEGORIES: index = COCO category id; "__background__" is 0, "N/A" the unused ids
COCO_CATEGORIES: tuple[str, ...] = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "N/A", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"
)

# torchvision/models/_meta.py _VOC_CATEGORIES: PASCAL VOC's 20 classes after the background
VOC_CATEGORIES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"
)

# PASCAL VOC's colour map (VOCdevkit VOClabelcolormap.m: each class id's bits interleaved into R, G, B), one per VOC class
VOC_PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
)
# fmt: on


class CategorySet(str, Enum):
    """Which label list a set of weights predicts, in index order."""

    NONE = "none"
    IMAGENET = "imagenet"  # ImageNet-1k, 1000 synsets (torchvision, timm and Keras share the order)
    COCO = "coco"  # COCO detection, 91 ids with background and unused ids
    VOC = "voc"  # PASCAL VOC segmentation, 21 classes with background

    def names(self) -> list[str]:
        """The category names in index order (empty for NONE)."""
        if self is CategorySet.IMAGENET:
            from mnv3.weights.imagenet import imagenet_categories

            return imagenet_categories()
        return list({CategorySet.COCO: COCO_CATEGORIES, CategorySet.VOC: VOC_CATEGORIES}.get(self, ()))

    def palette(self) -> list[list[int]]:
        """An (R, G, B) colour per category where the set has a conventional one (VOC), else empty."""
        return [list(c) for c in VOC_PALETTE] if self is CategorySet.VOC else []
