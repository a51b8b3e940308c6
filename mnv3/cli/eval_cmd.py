"""``mnv3 eval``: top-1 / top-5, per-class accuracy and a confusion matrix for a classifier; the 12 COCO numbers and
per-class AP for a detector; mIoU, per-class IoU and pixel accuracy for a segmenter; any weights source, or
(``--artifact``) a file exported from it, run in its runtime."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from mnv3.cli.common import WEIGHTS_HELP, deprecated_alias
from mnv3.data.fashion_mnist import NAME as FASHION_MNIST
from mnv3.spec.conventions import Preset

FASHION_SCENES = "fashion-scenes"


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate weights (classifiers: top-1/top-5, confusion matrix; detectors: COCO mAP, per-class AP; segmenters: mIoU)",
        description=f"SOURCE is {WEIGHTS_HELP}.",
    )
    p.add_argument("source", metavar="SOURCE", help="the weights to evaluate (same sources as --weights elsewhere)")
    p.add_argument("--model", default=None, help="registered model name (only where the weights cannot tell)")
    p.add_argument("--preset", choices=[x.value for x in Preset], default=None, help="conventions (default: the weights')")
    p.add_argument(
        "--data", default=None,
        help=f"classifiers: '{FASHION_MNIST}' (default) or an ImageFolder root; detectors: '{FASHION_SCENES}' (default, the cached "
        "set, generated on first use) or a COCO-layout folder; segmenters: the same scenes' masks, or a Cityscapes, VOC or images/ + masks/ folder",
    )  # fmt: skip
    p.add_argument("--split", default=None, help="split folder under the root / Fashion-MNIST split; detectors: test or val (default test)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (also the source of Fashion scenes)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", default="auto")
    p.add_argument("--subset", type=int, help="evaluate N images spread over the whole set (every class)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice); with --artifact, the runtime's (default 1)")
    p.add_argument(
        "--artifact", metavar="FILE",
        help="score this file exported from SOURCE by `mnv3 export` (.onnx, .pte, .tflite; fp32 or int8) in its runtime, "
        "with SOURCE's data, metric and post-processing: the accuracy an export keeps",
    )  # fmt: skip
    p.add_argument(
        "--out-dir", help="folder for eval-<split>.json and confusion-<split>.png / ap_per_class-<split>.png (default: next to SOURCE)"
    )
    p.add_argument("--output", dest="out_dir", action=deprecated_alias("--output", "--out-dir"), help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the task's numbers (top-1 / top-5 and per-class accuracy, or COCO mAP and per-class AP)."""
    import torch

    from mnv3.tasks.detection import DetectionEvalResult
    from mnv3.tasks.segmentation import SegmentationEvalResult
    from mnv3.train.eval_job import report_lines, run_eval

    if args.threads and not args.artifact:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1 or (args.subset is not None and args.subset < 1):
        raise ValueError(f"--batch-size and --subset must be >= 1, got {args.batch_size} and {args.subset}")
    runner = None
    if args.artifact:
        from mnv3.deploy.exported import ExportedModel, format_of

        format_of(args.artifact)  # a wrong suffix is refused before the weights load
        threads = args.threads or 1
        runner = functools.partial(ExportedModel, args.artifact, threads=threads)
    result, out = run_eval(
        args.source, args.data, args.split, args.data_dir, args.batch_size, args.device, args.out_dir, args.subset,
        model=args.model, preset=args.preset, runner=runner, runner_name=args.artifact,
    )
    print("\n".join(report_lines(result)))
    tag = f"-{args.split or 'test'}" + (f"-{Path(args.artifact).name}" if args.artifact else "")
    if isinstance(result, DetectionEvalResult):
        print(f"report: {out / f'eval{tag}.json'}   per-class AP: {out / f'ap_per_class{tag}.png'}")
    elif isinstance(result, SegmentationEvalResult):
        print(f"report: {out / f'eval{tag}.json'}   per-class IoU: {out / f'iou_per_class{tag}.png'}")
    else:
        print(f"report: {out / f'eval{tag}.json'}   confusion matrix: {out / f'confusion{tag}.png'}")
    return 0
