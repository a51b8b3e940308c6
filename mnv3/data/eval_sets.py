"""The one builder of labelled evaluation sets: ``mnv3 eval``, export's accuracy check and the benchmarks.

A set is Fashion-MNIST (``fashion-mnist``; its test split unless told otherwise) or an
ImageFolder-layout folder (``root/<class>/<image>``, or ``root/<split>/<class>/<image>``), read
through :func:`~mnv3.data.transforms.eval_transform` from the weights' own preprocessing, and
labelled in the weights' category order. A limit takes images spread evenly over the whole set,
so a class-ordered folder still shows every class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from mnv3.data import fashion_mnist as fm
from mnv3.data.datasets import TensorImageDataset, TransformedDataset
from mnv3.data.folder import FolderDataset, scan_folder
from mnv3.data.transforms import eval_transform, input_channels
from mnv3.utils.preprocessing import Preprocessing


@dataclass
class EvalSet:
    """A labelled, preprocessed evaluation dataset and the class names its labels index."""

    dataset: Dataset
    classes: list[str]
    name: str

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image (N, C, H, W) and label (N,), held in memory (for small sets: export checks, int8 accuracy)."""
        xs, ys = zip(*(self.dataset[i] for i in range(len(self.dataset))), strict=True)  # type: ignore[arg-type]
        return torch.stack(xs), torch.tensor(ys)


def spread(total: int, limit: int | None) -> list[int]:
    """``limit`` indices spaced evenly over ``range(total)`` (all of them when ``limit`` is None or larger)."""
    if limit is None or limit >= total:
        return list(range(total))
    if limit < 1:
        raise ValueError(f"the number of evaluation images must be >= 1, got {limit}")
    return torch.linspace(0, total - 1, limit).round().long().tolist()


def _names(xs: list[str], show: int = 5) -> str:
    return ", ".join(xs[:show]) + (f", ... ({len(xs)} in all)" if len(xs) > show else "")


def eval_set(
    source: str | Path,
    pp: Preprocessing,
    *,
    split: str = "test",
    categories: list[str] | None = None,
    limit: int | None = None,
    data_dir: str | None = None,
    verify: str = "header",
) -> EvalSet:
    """The labelled evaluation set ``source`` names, preprocessed as ``pp`` says, in ``categories``' label order."""
    channels = input_channels(pp)
    tf = eval_transform(pp)
    if str(source) == fm.NAME:
        x, y = fm.load_split("train" if split == "train" else "test", data_dir)
        base: Dataset = TensorImageDataset(x, y, fm.CLASSES, channels)
        classes, name = list(fm.CLASSES), f"Fashion-MNIST {split}"
    else:
        root = Path(source)
        sub = root / split if (root / split).is_dir() else root
        if categories:
            present = sorted(d.name for d in sub.iterdir() if d.is_dir() and not d.name.startswith(".")) if sub.is_dir() else []
            unknown = [c for c in present if c not in categories]
            if unknown:
                raise ValueError(
                    f"{sub} has class folder(s) the model does not know: {_names(unknown)}; the model's {len(categories)} "
                    f"categories are {_names(categories)}. Name the folders after the model's categories, or fine-tune on them"
                )
        index = scan_folder(sub, classes=list(categories) if categories else None, verify=verify)
        base = FolderDataset(index, grayscale=channels == 1)
        classes, name = list(index.classes), str(sub)
    picked = spread(len(base), limit)  # type: ignore[arg-type]
    ds = TransformedDataset(base if len(picked) == len(base) else Subset(base, picked), tf)  # type: ignore[arg-type]
    return EvalSet(ds, classes, f"{name} ({len(picked)} images)")
