"""What the COCO and VOC readers share: per-image records, the skip/count report, the Dataset and the collate function.

A reader checks every annotation and image file when it is built and keeps only usable ones, so an
epoch never stops on a bad file: boxes are clipped to the image, and a box left empty, a zero-area
or negative box, an unknown category and a missing or corrupt image are skipped and counted, with
one summary warning (``strict=True`` raises instead). Targets follow torchvision's detection models
(https://pytorch.org/vision/stable/models.html#object-detection): ``boxes`` as XYXY
``tv_tensors.BoundingBoxes``, ``labels`` int64 1..K (0 is the background), ``image_id``, and with
``masks=True`` ``masks`` as a (N, H, W) uint8 ``tv_tensors.Mask``.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from mnv3.data.datasets import sample_seed
from mnv3.data.images import check_image, image_problem

VERIFY_MODES = ("full", "header", "none")
SHOWN = 10  # how many skipped items a strict error lists


@dataclass(frozen=True)
class Skipped:
    """One annotation or image left out: what kind of problem (for the summary), where, and the details."""

    kind: str
    where: str
    detail: str = ""

    def line(self) -> str:
        """``where: kind (detail)``."""
        return f"{self.where}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Record:
    """One usable image: its file, id, size and its kept boxes (XYXY, pixels), 1-based labels and segmentations."""

    path: str
    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    segmentations: list[Any] | None = None
    iscrowd: np.ndarray | None = None


@dataclass
class Report:
    """What indexing skipped and fixed."""

    skipped: list[Skipped] = field(default_factory=list)
    clipped: int = 0

    def skip(self, kind: str, where: str, detail: str = "") -> None:
        """Count one skipped item."""
        self.skipped.append(Skipped(kind, where, detail))

    def summary(self) -> str:
        """One line: counts per kind of problem, one example, the number of clipped boxes."""
        kinds = ", ".join(f"{n} {k}" for k, n in Counter(s.kind for s in self.skipped).most_common())
        example = f"; e.g. {self.skipped[0].line()}" if self.skipped else ""
        clipped = f"; clipped {self.clipped} box(es) to the image" if self.clipped else ""
        return f"skipped {len(self.skipped)} item(s) ({kinds}){example}{clipped}"

    def finish(self, source: str | Path, strict: bool) -> None:
        """Warn once with the summary, or with ``strict`` raise a ValueError listing the first few."""
        if not self.skipped:
            return
        if strict:
            shown = "; ".join(s.line() for s in self.skipped[:SHOWN])
            more = f"; ... and {len(self.skipped) - SHOWN} more" if len(self.skipped) > SHOWN else ""
            raise ValueError(
                f"{source}: {len(self.skipped)} bad annotation(s) or image(s) (strict=True): {shown}{more}; fix them, or drop strict to skip them"
            )
        warnings.warn(f"{source}: {self.summary()} (strict=True fails instead)", stacklevel=3)


def clip_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The box clipped to [0, width] x [0, height], or None when nothing of it is left."""
    c = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    return c if c[2] > c[0] and c[3] > c[1] else None


def check_box(
    report: Report, where: str, box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """An XYXY box checked (finite, positive size) and clipped; None (and counted) when it cannot be used."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        report.skip("non-finite box", where, f"{list(box)}")
        return None
    if x2 < x1 or y2 < y1:
        report.skip("negative box width/height", where, f"x1 {x1:g} y1 {y1:g} x2 {x2:g} y2 {y2:g}")
        return None
    if x2 == x1 or y2 == y1:
        report.skip("zero-area box", where, f"x1 {x1:g} y1 {y1:g} x2 {x2:g} y2 {y2:g}")
        return None
    c = clip_box(x1, y1, x2, y2, width, height)
    if c is None:
        report.skip("box outside the image", where, f"x1 {x1:g} y1 {y1:g} x2 {x2:g} y2 {y2:g} in {width}x{height}")
        return None
    if c != (x1, y1, x2, y2):
        report.clipped += 1
    return c


def _image_problem(path: Path, width: int | None, height: int | None, verify: str) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with an image file, or None."""
    if not path.is_file():
        return "missing image file", str(path)
    if verify == "none":
        return None
    reason = check_image(path, full=verify == "full")
    if reason is not None:
        return "unreadable image file", f"{path}: {reason}"
    if width is not None and height is not None:
        try:
            with Image.open(path) as img:
                size = img.size
        except Exception as e:  # noqa: BLE001 - PIL raises many types; any means unreadable
            return "unreadable image file", f"{path}: {image_problem(path, e)}"
        if size != (width, height):
            return "image size differs from the annotation", f"{path} is {size[0]}x{size[1]}, annotated {width}x{height}"
    return None


def find_bad_images(
    paths: Sequence[Path], sizes: Sequence[tuple[int | None, int | None]], verify: str, threads: int = 4
) -> list[tuple[str, str] | None]:
    """:func:`_image_problem` for every file, in a thread pool (PIL releases the GIL while decoding)."""
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda a: _image_problem(a[0], a[1][0], a[1][1], verify), zip(paths, sizes, strict=True)))


def read_rgb(path: str | Path) -> tv_tensors.Image:
    """Decode an image file to a (3, H, W) uint8 image in its stored orientation (annotations ignore EXIF rotation)."""
    with Image.open(path) as img:
        img.load()
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        return tv_tensors.Image(torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous())


class DetectionDataset(Dataset):
    """(image, target) pairs of checked records; ``transforms(image, target)`` runs per sample.

    With ``seed`` set, a sample's random augmentation is a pure function of (seed, epoch, index)
    (set :attr:`epoch` each epoch), drawn inside ``torch.random.fork_rng`` like
    :class:`mnv3.data.datasets.TransformedDataset`. An image that fails to decode at load time
    (possible with ``verify="header"`` or ``"none"``) is replaced by the next one, with a warning.
    """

    def __init__(
        self,
        records: list[Record],
        classes: Sequence[str],
        report: Report,
        source: str,
        transforms: Callable | None,
        seed: int | None,
    ) -> None:
        self.records = records
        self.classes = list(classes)
        self.report = report
        self.source = source
        self.transforms = transforms
        self.seed = seed
        self.epoch = 0

    @property
    def skipped(self) -> list[Skipped]:
        """Every annotation and image left out when the dataset was indexed."""
        return self.report.skipped

    def __len__(self) -> int:
        return len(self.records)

    def decode_masks(self, record: Record) -> torch.Tensor | None:
        """(N, H, W) uint8 instance masks of a record, or None when the reader keeps no segmentations."""
        return None

    def target(self, i: int) -> dict[str, Any]:
        """The target of record ``i`` without reading its image."""
        r = self.records[i]
        t: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(r.boxes.reshape(-1, 4)), format="XYXY", canvas_size=(r.height, r.width)
            ),
            "labels": torch.from_numpy(r.labels.astype(np.int64)),
            "image_id": r.image_id,
        }
        if r.iscrowd is not None:
            t["iscrowd"] = torch.from_numpy(r.iscrowd.astype(np.int64))
        masks = self.decode_masks(r)
        if masks is not None:
            t["masks"] = tv_tensors.Mask(masks)
        return t

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        n = len(self.records)
        for k in range(n):
            j = (i + k) % n
            try:
                image = read_rgb(self.records[j].path)
            except Exception as e:  # noqa: BLE001 - PIL raises many types; any means "use the next image"
                warnings.warn(
                    f"{self.source}: skipping unreadable image {self.records[j].path}: {image_problem(Path(self.records[j].path), e)}",
                    stacklevel=2,
                )
                continue
            target = self.target(j)
            if self.transforms is None:
                return image, target
            if self.seed is None:
                return self.transforms(image, target)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, i))
                return self.transforms(image, target)
        raise ValueError(f"{self.source}: no image could be decoded")


def detection_collate(
    batch: Sequence[tuple[Any, dict[str, Any]]],
) -> tuple[torch.Tensor | list[torch.Tensor], list[dict[str, Any]]]:
    """(images, targets) from a list of samples: images stacked when they share a shape (after Resize), else a list."""
    images = [b[0] for b in batch]
    targets = [b[1] for b in batch]
    if images and all(isinstance(x, torch.Tensor) and x.shape == images[0].shape for x in images):
        return torch.stack([x.as_subclass(torch.Tensor) for x in images]), targets
    return images, targets
