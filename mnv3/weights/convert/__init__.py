"""Converters between mnv3 and torchvision / timm / Keras MobileNetV3 checkpoints (docs/weights.md)."""

from mnv3.weights.convert.common import LIBRARY_PRESETS, Library, Mapped, check_fits, expected_shapes, fitting_models, mismatches
from mnv3.weights.convert.keras import keras_to_mnv3
from mnv3.weights.convert.timm import timm_to_mnv3
from mnv3.weights.convert.torchvision import mnv3_to_torchvision, torchvision_to_mnv3

__all__ = [
    "LIBRARY_PRESETS", "Library", "Mapped", "check_fits", "expected_shapes", "fitting_models", "mismatches",
    "keras_to_mnv3", "timm_to_mnv3", "torchvision_to_mnv3", "mnv3_to_torchvision",
]
