"""Pascal VOC detection data: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` (http://host.robots.ox.ac.uk/pascal/VOC/).

VOC's pixel coordinates are 1-based and inclusive, so a ``<bndbox>`` becomes the XYXY box
``(xmin - 1, ymin - 1, xmax, ymax)``. Labels are 1..K in ``classes`` order (0 is the background);
``difficult`` objects are left out unless ``keep_difficult`` (as in SSD training). XML is parsed with
defusedxml when it is installed (no entity expansion; https://pypi.org/project/defusedxml/), else
with the standard library's ElementTree. Bad files and objects are skipped and counted as for COCO.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from mnv3.data.detection.common import DetectionDataset, Record, Report, check_box, find_bad_images

try:  # safe parsing where available
    from defusedxml.ElementTree import parse as _parse_xml
except ImportError:  # pragma: no cover - defusedxml is in the detection extra
    from xml.etree.ElementTree import parse as _parse_xml

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def _text(node: Element | None, tag: str) -> str | None:
    child = None if node is None else node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _number(node: Element | None, tag: str) -> float | None:
    t = _text(node, tag)
    try:
        return None if t is None else float(t)
    except ValueError:
        return None


def _parse(path: Path) -> tuple[Element | None, str]:
    """(root element, "") or (None, why it cannot be read)."""
    try:
        return _parse_xml(path).getroot(), ""
    except ParseError as e:
        return None, f"malformed XML ({e})"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    except Exception as e:  # noqa: BLE001 - defusedxml's EntitiesForbidden / DTDForbidden and the like
        return None, f"refused XML ({type(e).__name__})"


class VOCDetection(DetectionDataset):
    """One split of a VOC-layout folder as a torch Dataset of (uint8 image, target) pairs."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "trainval",
        *,
        classes: Sequence[str] = VOC_CLASSES,
        keep_difficult: bool = False,
        strict: bool = False,
        verify: str = "header",
        transforms: Callable | None = None,
        seed: int | None = None,
        threads: int = 4,
    ) -> None:
        self.root = Path(root)
        list_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(
                f"VOC split file {str(list_file)!r} does not exist; expected the layout ROOT/ImageSets/Main/<split>.txt, ROOT/Annotations, ROOT/JPEGImages"
            )
        ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"{list_file}: the split lists no image")
        label_of = {c: k + 1 for k, c in enumerate(classes)}
        report = Report()
        pending: list[tuple[int, str, Path, int, int, list[tuple[float, float, float, float]], list[int]]] = []
        for n, image_id in enumerate(ids):
            xml = self.root / "Annotations" / f"{image_id}.xml"
            where = f"{xml.name}"
            if not xml.is_file():
                report.skip("missing annotation file", where, str(xml))
                continue
            node, why = _parse(xml)
            if node is None:
                report.skip("unreadable annotation file", where, why)
                continue
            size = node.find("size")
            width, height = _number(size, "width"), _number(size, "height")
            if not width or not height or width < 1 or height < 1:
                report.skip("no image <size> in the annotation", where)
                continue
            boxes: list[tuple[float, float, float, float]] = []
            labels: list[int] = []
            for k, obj in enumerate(node.findall("object")):
                owhere = f"{where} object {k}"
                name = _text(obj, "name")
                if name not in label_of:
                    report.skip("unknown class", owhere, f"{name!r}")
                    continue
                if _text(obj, "difficult") == "1" and not keep_difficult:
                    continue
                bb = obj.find("bndbox")
                coords = [_number(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")]
                if any(c is None for c in coords):
                    report.skip("malformed <bndbox>", owhere)
                    continue
                xmin, ymin, xmax, ymax = (float(c) for c in coords)  # type: ignore[arg-type]
                box = check_box(report, owhere, (xmin - 1, ymin - 1, xmax, ymax), int(width), int(height))
                if box is not None:
                    boxes.append(box)
                    labels.append(label_of[name])
            image = self.root / "JPEGImages" / f"{image_id}.jpg"
            if not image.is_file() and _text(node, "filename"):
                image = self.root / "JPEGImages" / str(_text(node, "filename"))
            pending.append((n, image_id, image, int(width), int(height), boxes, labels))
        problems = find_bad_images([p[2] for p in pending], [(p[3], p[4]) for p in pending], verify, threads)
        records = []
        for (n, image_id, image, width, height, boxes, labels), problem in zip(pending, problems, strict=True):
            if problem is not None:
                report.skip(problem[0], f"{image_id}", problem[1])
                continue
            records.append(
                Record(
                    str(image),
                    n,
                    height,
                    width,
                    np.array(boxes, dtype=np.float32).reshape(-1, 4),
                    np.array(labels, dtype=np.int64),
                )
            )
        self.ids = ids
        if not records:
            raise ValueError(f"{list_file}: none of its {len(ids)} image(s) is usable ({report.summary()})")
        report.finish(list_file, strict)
        super().__init__(records, classes, report, str(list_file), transforms, seed)

    def image_name(self, i: int) -> str:
        """The VOC id (file stem) of sample ``i``; its target's ``image_id`` is the line number in the split file (0-based)."""
        return Path(self.records[i].path).stem
