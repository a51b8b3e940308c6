"""``mnv3 predict``: top-k labels and probabilities, a detector's boxes or a segmenter's classes per pixel, for images.

The weights are any source the resolver reads (named entry, mnv3 file, torchvision / timm / Keras
checkpoint, run folder); ``--model`` is needed only where the weights cannot tell. A detector
(``spec.detection`` set) prints its boxes in the image's pixels and, with ``-o`` / ``--out-dir``,
draws them (``torchvision.utils.draw_bounding_boxes``). A segmenter (``spec.segmentation`` set) prints
each class's share of the pixels and, with ``-o`` / ``--out-dir``, writes a colour overlay
(``torchvision.utils.draw_segmentation_masks``) and the class ids beside it (``<name>.classes.png``).
The spec decides the task; ``--task`` only checks it. A file that is not a readable image gets an
error line; the others are still predicted, and the exit code is 2 at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from mnv3.cli.common import add_model_options, add_weights_option, load_network, spec_task, task_name
from mnv3.weights.io import WeightsMeta


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify, detect objects in or segment images, with named, converted or trained weights")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL opens)")
    add_weights_option(p, required=True)
    p.add_argument(
        "--model", default=None, help="registered model name (only where the weights cannot tell, e.g. timm's ambiguous ports)"
    )
    p.add_argument(
        "--task",
        type=task_name,
        default=None,
        help="classification (classify), detection (detect) or segmentation (segment): checked against the network, which decides",
    )
    p.add_argument("--topk", type=int, default=5, help="classifiers: how many classes to print (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    p.add_argument("--threshold", type=float, default=None, help="detectors: lowest score shown (default 0.3)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="detectors / segmenters: the image with its boxes or classes drawn (PNG; a segmenter's class ids go beside it, "
        "<name>.classes.png), for one IMAGE",
    )
    p.add_argument(
        "--out-dir", default=None, help="detectors / segmenters: folder for <image name>.png drawings, for any number of IMAGEs"
    )
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mnv3.data.images import open_image
    from mnv3.data.transforms import eval_transform

    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    model, meta = load_network(args, args.model)
    assert meta is not None  # --weights is required
    task = spec_task(model.spec)
    if args.task is not None and args.task != task:
        raise ValueError(
            f"--task {args.task}: {model.spec.name} is a {task} network (its spec decides; drop --task or pick other weights)"
        )
    if args.threshold is not None and task != "detection":
        raise ValueError(f"--threshold: only for detectors; {model.spec.name} is a {task} network")
    if task == "detection":
        return _detect(args, model, meta)
    if task == "segmentation":
        return _segment(args, model, meta)
    given = [f for f, v in (("-o", args.output), ("--out-dir", args.out_dir)) if v is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: only for detectors and segmenters; {model.spec.name} is a classifier (it prints its --topk classes)"
        )
    prep = meta.preprocessing
    transform = eval_transform(prep)
    k = min(args.topk, model.spec.num_classes)
    named = len(meta.categories) == model.spec.num_classes

    def label(i: int) -> str:
        return meta.categories[i] if named else f"class {i}"

    failed = 0
    for name in args.images:
        try:
            img = open_image(name, "L" if prep.grayscale else "RGB")
        except (ValueError, FileNotFoundError) as e:  # open_image names the file and the reason
            print(f"mnv3 predict: error: {e}", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            probs = model(transform(img).unsqueeze(0)).softmax(-1)[0]
        top = probs.topk(k)
        rows = [(int(i), float(p)) for p, i in zip(top.values, top.indices, strict=True)]
        if args.json:
            print(json.dumps({"image": name, "top": [{"index": i, "label": label(i), "prob": p} for i, p in rows]}))
        else:
            print(name)
            for rank, (i, p) in enumerate(rows, start=1):
                print(f"  {rank}. [{i:>4}] {p:.4f}  {label(i)}")
    return _exit_code(failed, len(args.images))


def _exit_code(failed: int, total: int) -> int:
    """2 (with a summary line) when some image files could not be read, else 0."""
    if failed:
        print(f"mnv3 predict: error: {failed} of {total} file(s) could not be read", file=sys.stderr)
        return 2
    return 0


def _readable(
    images: list[str], outputs: list[Path | None], mode: str, failed: list[str]
) -> Iterator[tuple[str, Path | None, Any]]:
    """(name, drawing path, (C, H, W) uint8 tensor) of each readable image; an unreadable one gets an error line and joins ``failed``."""
    from torchvision.transforms.functional import pil_to_tensor

    from mnv3.data.images import open_image

    for name, out in zip(images, outputs, strict=True):
        try:
            pixels = pil_to_tensor(open_image(name, mode))
        except (ValueError, FileNotFoundError) as e:  # open_image names the file and the reason
            print(f"mnv3 predict: error: {e}", file=sys.stderr)
            failed.append(name)
            continue
        yield name, out, pixels


def _outputs(args: argparse.Namespace) -> list[Path | None]:
    """Where each image's drawing goes: ``-o`` for one image, ``--out-dir/<name>.png`` for each, else nowhere."""
    if args.output is not None and args.out_dir is not None:
        raise ValueError("give -o FILE (one image) or --out-dir DIR (any number), not both")
    if args.output is not None:
        if len(args.images) != 1:
            raise ValueError(f"-o names one drawing but {len(args.images)} images were given; use --out-dir DIR for several")
        if Path(args.output).suffix.lower() != ".png":
            raise ValueError(f"-o {args.output}: the drawing is a PNG file; give a name ending in .png")
        return [Path(args.output)]
    if args.out_dir is not None:
        stems = [Path(n).stem for n in args.images]
        if len(set(stems)) != len(stems) or any(f"{s}.classes" in stems for s in stems):
            raise ValueError(
                "--out-dir: two images share a file name (or one is another's .classes); give them different names or run them separately"
            )
        return [Path(args.out_dir) / f"{s}.png" for s in stems]
    return [None] * len(args.images)


def _detect(args: argparse.Namespace, model: nn.Module, meta: WeightsMeta) -> int:
    """Detect objects in each image: print them (boxes in the image's pixels) and draw them when asked."""
    import torch
    from torchvision import tv_tensors
    from torchvision.utils import draw_bounding_boxes

    from mnv3.data.detection import detection_eval_transform
    from mnv3.train.eval_job import detector_classes
    from mnv3.utils.atomic import atomic_write_bytes

    threshold = 0.3 if args.threshold is None else args.threshold
    if not 0 <= threshold <= 1:
        raise ValueError(f"--threshold is a score in [0, 1], got {threshold}")
    outputs = _outputs(args)
    names = detector_classes(model.spec, meta)
    pp = meta.preprocessing
    size = pp.crop
    transform = detection_eval_transform(size, pp.mean, pp.std)
    failed: list[str] = []
    for name, out, pixels in _readable(args.images, outputs, "RGB", failed):
        h, w = pixels.shape[-2:]
        with torch.no_grad():
            x = transform(tv_tensors.Image(pixels)).unsqueeze(0)
            (det,) = model.postprocess(model(x), [tuple(x.shape[-2:])])
        keep = det["scores"] >= threshold
        scale = torch.tensor([w / x.shape[-1], h / x.shape[-2]] * 2)
        boxes = (det["boxes"][keep] * scale).clamp(min=0).minimum(torch.tensor([w, h, w, h], dtype=torch.float32))
        found = [{"label": int(lab), "category": names[int(lab) - 1], "score": float(sc), "box": [round(float(v), 2) for v in b]}
                 for b, sc, lab in zip(boxes, det["scores"][keep], det["labels"][keep], strict=True)]  # fmt: skip
        if out is not None:
            texts = [f"{d['category']} {d['score']:.2f}" for d in found]
            drawn = draw_bounding_boxes(pixels, boxes, labels=texts, width=max(1, round(min(h, w) / 160))) if found else pixels
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, _png(drawn))
        _print_detections(args, name, (w, h), found, out)
    return _exit_code(len(failed), len(args.images))


def _png(pixels: Any) -> bytes:
    """A (3, H, W) uint8 tensor (RGB) or an (H, W) one (mode L) as PNG bytes."""
    from torchvision.transforms.functional import to_pil_image

    buf = io.BytesIO()
    to_pil_image(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _print_detections(
    args: argparse.Namespace, name: str, size: tuple[int, int], found: list[dict[str, Any]], out: Path | None
) -> None:
    """One JSON object per image (``--json``), else a header line and one line per box."""
    if args.json:
        print(json.dumps({"image": name, "size": list(size), "detections": found, **({"drawing": str(out)} if out else {})}))
        return
    print(f"{name}: {len(found)} detection(s)" + (f", drawn in {out}" if out else ""))
    for d in found:
        x1, y1, x2, y2 = d["box"]
        print(f"  {d['score']:.3f}  {d['category']:<16} [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")


def classes_path(drawing: Path) -> Path:
    """Where a segmenter's class-id PNG goes beside its drawing: ``out.png`` -> ``out.classes.png``."""
    return drawing.with_suffix(".classes.png")


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` fixed, distinct colours: PASCAL VOC's bit-interleaved palette (class 0 black, 1 dark red, 2 dark green, ...)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def segmenter_palette(meta: WeightsMeta, num_classes: int) -> list[tuple[int, int, int]]:
    """The weights' palette (``WeightsMeta.palette``, one RGB per class) where they have one, else :func:`default_palette`."""
    if not meta.palette:
        return default_palette(num_classes)
    if len(meta.palette) < num_classes or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in meta.palette):
        raise ValueError(
            f"the weights' palette needs an (R, G, B) colour in 0..255 for each of the {num_classes} classes; it has {len(meta.palette)} entries"
        )
    return [(int(c[0]), int(c[1]), int(c[2])) for c in meta.palette[:num_classes]]


def _segment(args: argparse.Namespace, model: nn.Module, meta: WeightsMeta) -> int:
    """Segment each image at its own size: print each class's share of the pixels, draw the classes and write their ids when asked."""
    import torch
    import torch.nn.functional as F
    from torchvision import tv_tensors
    from torchvision.utils import draw_segmentation_masks

    from mnv3.data.segmentation import weights_eval_transform
    from mnv3.tasks.segmentation import segmentation_logits
    from mnv3.utils.atomic import atomic_write_bytes

    n = model.spec.num_classes
    if n > 256:
        raise ValueError(f"{model.spec.name} has {n} classes; the class-id PNG holds 8-bit ids (at most 256 classes)")
    outputs = _outputs(args)
    names = list(meta.categories) if len(meta.categories) == n else [f"class {i}" for i in range(n)]
    palette = segmenter_palette(meta, n)
    pp = meta.preprocessing
    transform = weights_eval_transform(pp)
    failed: list[str] = []
    for name, out, pixels in _readable(args.images, outputs, "L" if pp.grayscale else "RGB", failed):
        h, w = pixels.shape[-2:]
        with torch.no_grad():
            logits = segmentation_logits(model(transform(tv_tensors.Image(pixels)).unsqueeze(0)))
            ids = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False).argmax(1)[0]
        fractions = (torch.bincount(ids.flatten(), minlength=n).double() / ids.numel()).tolist()
        if out is not None:
            masks = ids.unsqueeze(0) == torch.arange(n).view(n, 1, 1)
            drawn = draw_segmentation_masks(pixels.expand(3, h, w), masks, alpha=0.5, colors=palette)  # type: ignore[arg-type]
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(classes_path(out), _png(ids.to(torch.uint8)))
            atomic_write_bytes(out, _png(drawn))
        _print_segmentation(args, name, (w, h), [(i, names[i], f) for i, f in enumerate(fractions)], out)
    return _exit_code(len(failed), len(args.images))


def _print_segmentation(
    args: argparse.Namespace, name: str, size: tuple[int, int], shares: list[tuple[int, str, float]], out: Path | None
) -> None:
    """One JSON object per image (``--json``: every class's pixel fraction), else a header line and one line per class present."""
    files = {"drawing": str(out), "classes": str(classes_path(out))} if out else {}
    if args.json:
        fractions = [{"index": i, "label": label, "fraction": f} for i, label, f in shares]
        print(json.dumps({"image": name, "size": list(size), "fractions": fractions, **files}))
        return
    present = sorted((s for s in shares if s[2] > 0), key=lambda s: -s[2])
    print(
        f"{name}: {size[0]}x{size[1]}, {len(present)} class(es)"
        + (f", drawn in {out}, class ids in {files['classes']}" if out else "")
    )
    for i, label, f in present:
        print(f"  {100 * f:6.2f} %  [{i:>3}] {label}")
