"""COCO-format detection data (instances JSON + image folder) read through pycocotools (https://cocodataset.org/#format-data).

Category ids map to contiguous labels 1..K in id order (0 is the background). A schema error (not
JSON, missing or mistyped ``images`` / ``annotations`` / ``categories``, an image entry without
id, file name or size, an empty image list) is a one-line ValueError naming the file; a bad
annotation or image file is skipped and counted (:mod:`mnv3.data.detection.common`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnv3.data.detection.common import DetectionDataset, Record, Report, check_box, find_bad_images


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_json(path: Path) -> dict[str, Any]:
    """The parsed instances file, with its top-level schema checked; one-line errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_bytes())
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object with 'images', 'annotations' and 'categories', got a {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path}: no {key!r} list; a COCO instances file has 'images', 'annotations' and 'categories'")
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: {key!r} must be a list, got a {type(data[key]).__name__}")
    if not data["images"]:
        raise ValueError(f"{path}: the 'images' list is empty")
    if not data["categories"]:
        raise ValueError(f"{path}: the 'categories' list is empty")
    return data


def _check_images(path: Path, images: list[Any]) -> None:
    seen: set[int] = set()
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            raise ValueError(f"{path}: images[{i}] must be an object, got a {type(im).__name__}")
        for key, ok, what in (
            ("id", _is_int, "an integer"),
            ("file_name", lambda v: isinstance(v, str) and v, "a file name"),
            ("width", _is_int, "an integer"),
            ("height", _is_int, "an integer"),
        ):
            if key not in im:
                raise ValueError(f"{path}: images[{i}] has no {key!r}")
            if not ok(im[key]):
                raise ValueError(f"{path}: images[{i}] {key!r} must be {what}, got {im[key]!r}")
        if im["width"] < 1 or im["height"] < 1:
            raise ValueError(f"{path}: images[{i}] (id {im['id']}) has size {im['width']}x{im['height']}")
        if im["id"] in seen:
            raise ValueError(f"{path}: images[{i}] repeats image id {im['id']}")
        seen.add(im["id"])


def _check_categories(path: Path, categories: list[Any]) -> None:
    seen: set[int] = set()
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise ValueError(
                f"{path}: categories[{i}] must be an object with an integer 'id' and a string 'name', got {c!r}"[:300]
            )
        if c["id"] in seen:
            raise ValueError(f"{path}: categories[{i}] repeats category id {c['id']}")
        seen.add(c["id"])


def _segmentation_ok(s: Any, width: int, height: int) -> bool:
    """Polygons (lists of >= 3 x, y pairs) or an RLE (``counts`` and the image's ``size``), as pycocotools accepts them."""
    if isinstance(s, list):
        return bool(s) and all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p) for p in s
        )
    if isinstance(s, dict):
        size = s.get("size")
        return isinstance(s.get("counts"), (str, list)) and size == [height, width]
    return False


class CocoDetection(DetectionDataset):
    """A COCO instances file and its image folder as a torch Dataset of (uint8 image, target) pairs.

    ``verify``: ``"header"`` (default) opens each image's header, ``"full"`` decodes it, ``"none"``
    only checks it exists. Crowd annotations (``iscrowd: 1``) are left out unless ``include_crowd``, which also
    puts an int64 ``iscrowd`` in every target (for COCO evaluation; the train transform drops it with its boxes).
    """

    def __init__(
        self,
        images: str | os.PathLike,
        annotations: str | os.PathLike,
        *,
        masks: bool = False,
        strict: bool = False,
        verify: str = "header",
        include_crowd: bool = False,
        transforms: Callable | None = None,
        seed: int | None = None,
        threads: int = 4,
    ) -> None:
        from pycocotools.coco import COCO

        self.images_dir = Path(images)
        self.annotation_file = Path(annotations)
        path = self.annotation_file
        data = read_json(path)
        _check_images(path, data["images"])
        _check_categories(path, data["categories"])
        report = Report()
        cats = sorted(c["id"] for c in data["categories"])
        self.label_of = {cid: k + 1 for k, cid in enumerate(cats)}
        self.category_ids = cats
        names = {c["id"]: c["name"] for c in data["categories"]}
        image_size = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        self.masks = masks
        anns: list[dict[str, Any]] = []
        ann_ids: set[int] = set()
        for i, a in enumerate(data["annotations"]):
            where = f"annotations[{i}]"
            if not isinstance(a, dict):
                report.skip("annotation is not an object", where)
                continue
            where = f"annotation id {a.get('id', '?')} (annotations[{i}])"
            if not _is_int(a.get("id")) or a["id"] in ann_ids:
                report.skip("missing or repeated annotation id", where)
                continue
            ann_ids.add(a["id"])
            if a.get("image_id") not in image_size:
                report.skip("unknown image id", where, f"image_id {a.get('image_id')!r}")
                continue
            if a.get("category_id") not in self.label_of:
                report.skip("unknown category id", where, f"category_id {a.get('category_id')!r}")
                continue
            if a.get("iscrowd", 0) and not include_crowd:
                continue
            bbox = a.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
                report.skip("malformed bbox (expected [x, y, width, height])", where, f"bbox {bbox!r}"[:80])
                continue
            x, y, w, h = (float(v) for v in bbox)
            width, height = image_size[a["image_id"]]
            box = check_box(report, where, (x, y, x + w, y + h), width, height)
            if box is None:
                continue
            if masks and not _segmentation_ok(a.get("segmentation"), width, height):
                report.skip("missing or malformed segmentation", where)
                continue
            anns.append({**a, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "_xyxy": box})
        coco = COCO()
        coco.dataset = {
            "images": data["images"],
            "annotations": anns,
            "categories": data["categories"],
            "info": data.get("info", {}),
        }
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
        self.coco = coco
        entries = data["images"]
        files = [self.images_dir / im["file_name"] for im in entries]
        problems = find_bad_images(files, [(im["width"], im["height"]) for im in entries], verify, threads)
        records = []
        for im, f, problem in zip(entries, files, problems, strict=True):
            if problem is not None:
                report.skip(problem[0], f"image id {im['id']}", problem[1])
                continue
            kept = coco.imgToAnns.get(im["id"], [])
            records.append(
                Record(
                    str(f),
                    im["id"],
                    im["height"],
                    im["width"],
                    np.array([a["_xyxy"] for a in kept], dtype=np.float32).reshape(-1, 4),
                    np.array([self.label_of[a["category_id"]] for a in kept], dtype=np.int64),
                    [a["segmentation"] for a in kept] if masks else None,
                    np.array([1 if a.get("iscrowd", 0) else 0 for a in kept], dtype=np.int64) if include_crowd else None,
                )
            )
        if not records:
            raise ValueError(f"{path}: none of its {len(entries)} image(s) is usable ({report.summary()})")
        report.finish(path, strict)
        super().__init__(records, [names[c] for c in cats], report, str(path), transforms, seed)

    def decode_masks(self, record: Record) -> torch.Tensor | None:
        """(N, H, W) uint8 masks from the record's polygons or RLEs (pycocotools' frPyObjects / decode)."""
        if record.segmentations is None:
            return None
        from pycocotools import mask as mask_utils

        h, w = record.height, record.width
        out = np.zeros((len(record.segmentations), h, w), dtype=np.uint8)
        for k, s in enumerate(record.segmentations):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools 2.0.x vs NumPy 2's __array__(copy=)
                    if isinstance(s, list):
                        rle = mask_utils.merge(mask_utils.frPyObjects(s, h, w))
                    elif isinstance(s["counts"], list):
                        rle = mask_utils.frPyObjects(s, h, w)
                    else:
                        rle = s
                    out[k] = mask_utils.decode(rle)
            except Exception as e:  # noqa: BLE001 - a corrupt RLE string: an empty mask, not a crash mid-epoch
                warnings.warn(
                    f"{self.source}: image id {record.image_id}: undecodable segmentation {k} ({e}); using an empty mask",
                    stacklevel=2,
                )
        return torch.from_numpy(out)
