"""Shared utilities below every other layer: atomic writes, preprocessing metadata, "did you mean" hints.

Nothing here imports another part of mnv3, so every layer (spec up to cli) may use it.
"""

from mnv3.utils.atomic import atomic_write_bytes, atomic_write_text
from mnv3.utils.preprocessing import IMAGENET, INCEPTION, Preprocessing
from mnv3.utils.suggest import did_you_mean

__all__ = ["atomic_write_bytes", "atomic_write_text", "IMAGENET", "INCEPTION", "Preprocessing", "did_you_mean"]
