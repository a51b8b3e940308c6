"""Dataset wrappers: in-memory image tensors, and per-sample augmentation seeded by (seed, epoch, index).

Seeding each sample's augmentation from its index makes the images a run sees independent of
worker count, process count (DDP) and interruptions, which is what lets ``--resume`` and a
``torchrun`` run reproduce a single uninterrupted process exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors


class TensorImageDataset(Dataset):
    """uint8 images (N, H, W) or (N, C, H, W) with integer labels; ``channels=3`` replicates grayscale."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], channels: int | None = None) -> None:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images of shape (N, H, W) or (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(images) == 0:
            raise ValueError("the dataset is empty")
        self.images = images
        self.labels = labels.long()
        self.classes = list(classes)
        self.channels = channels or images.shape[1]
        if self.channels not in (images.shape[1], 3):
            raise ValueError(f"cannot make {self.channels} channels from {images.shape[1]}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[tv_tensors.Image, int]:
        img = self.images[i]
        if img.shape[0] != self.channels:
            img = img.expand(self.channels, -1, -1)
        return tv_tensors.Image(img), int(self.labels[i])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample of one epoch (splitmix64 finaliser)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


class TransformedDataset(Dataset):
    """Apply ``transform`` to each image of ``base``; with ``seed`` set, the randomness is a pure function of
    (seed, epoch, index), drawn inside ``torch.random.fork_rng`` so the global stream is untouched.

    Set :attr:`epoch` before building each epoch's loader.
    """

    def __init__(self, base: Dataset, transform: Callable, seed: int | None = None) -> None:
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.classes = getattr(base, "classes", None)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        img, label = self.base[i]
        if self.seed is None:
            return self.transform(img), label
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, i))
            return self.transform(img), label
