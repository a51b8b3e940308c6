"""``mnv3 export``: a checked, verified ONNX / ExecuTorch / LiteRT file, fp32 or int8, of a classifier, detector or segmenter."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from typing import Any

from mnv3.cli.common import RandomWeightsWarning, add_model_options, add_weights_option, load_network
from mnv3.weights.io import WeightsMeta


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export to ONNX / ExecuTorch (XNNPACK) / LiteRT, BN folded, hard-swish native, verified against PyTorch",
        description=(
            "Fold BN, export, check the graph (hard-swish whole, nothing decomposed, one XNNPACK delegate), optionally "
            "quantize to int8 (per-channel weights), then run the file in its runtime against PyTorch. The output file "
            "is written only when every step passed. A detector (ssdlite_*) exports its raw bbox_regression (N, A, 4) and "
            "cls_logits (N, A, C) to every format, checked on both (max abs diff; int8: per-anchor class agreement); the "
            "anchors go beside it (<name>.anchors.npy), decoding and NMS run outside the graph; with --nms (ONNX) the graph "
            "ends at boxes, scores and labels for one image instead. A segmenter (lraspp_*) "
            "exports logits (N, C, H, W) at the input size, upsampling inside the graph, checked by max abs diff and "
            "per-pixel argmax agreement. Dense int8 calibrates on --calibration fashion-scenes or a folder of images. "
            "Metadata (classes, preprocessing, box coder) is in the ONNX file, else beside it (<name>.metadata.json)."
        ),
    )
    p.add_argument(
        "model", nargs="?", default=None, help="registered name (see `mnv3 models`) or a spec file; optional with --weights"
    )
    add_weights_option(p, note="; random init without")
    p.add_argument("--format", required=True, choices=["onnx", "executorch", "litert"], help="output format / runtime")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx / .pte / .tflite)")
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input size (default: the weights' crop, else 224; detectors and segmenters 320)",
    )
    p.add_argument("--int8", action="store_true", help="post-training int8 quantization (needs --calibration)")
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration images: a folder (searched recursively), 'fashion-mnist' (classifiers) or 'fashion-scenes' (its training images)",
    )
    p.add_argument("--calibration-images", type=int, default=128, help="how many calibration images (default 128)")
    p.add_argument(
        "--eval-data", default=None, help="labelled set for accuracy before/after: ImageFolder-layout folder or 'fashion-mnist'"
    )
    p.add_argument(
        "--eval-images", type=int, default=None, help="evaluate this many images, spread over the whole set (every class)"
    )
    p.add_argument("--data-dir", default=None, help="where the Fashion-MNIST IDX files are (default: Debian's / the cache)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="fp32: largest allowed max-abs output difference (default 1e-4)")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="int8: fail below this agreement with fp32 (0-1): top-1, per-anchor class (detectors), per-pixel argmax (segmenters)",
    )
    p.add_argument(
        "--nms",
        action="store_true",
        help="detectors, ONNX: decoding + per-class NMS inside the graph (outputs boxes, scores, labels; batch 1), checked "
        "against the model's own post-processing",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mnv3.deploy.calibration import calibration_images, labelled_set
    from mnv3.deploy.detection_nms import check_nms_format
    from mnv3.deploy.export import export_model
    from mnv3.deploy.loading import preprocessing_for
    from mnv3.deploy.runtimes import require

    if args.nms:
        check_nms_format(args.format)  # before require(): the runtime's absence is not the problem then
    require(args.format)
    if args.int8 and args.calibration is None:
        raise ValueError("--int8 needs --calibration (a folder of images or 'fashion-mnist')")
    if args.calibration is not None and not args.int8:
        raise ValueError("--calibration is only used with --int8")
    if args.min_agreement is not None and not 0 <= args.min_agreement <= 1:
        raise ValueError(f"--min-agreement is a fraction in [0, 1], got {args.min_agreement}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        model, meta = load_network(args, args.model)
    for w in caught:
        print(f"mnv3 export: warning: {w.message}", file=sys.stderr)
    spec = model.spec
    if args.nms and spec.detection is None:
        raise ValueError(f"--nms is for detectors (ssdlite_*); {spec.name} has no boxes to suppress: drop --nms")
    if spec.detection is not None or spec.segmentation is not None:
        return _export_dense(args, model, meta)
    resolution = args.resolution or (meta.preprocessing.crop if meta is not None else 224)
    pp = preprocessing_for(meta, resolution, spec.in_chans)
    calib = calibration_images(args.calibration, pp, spec.in_chans, args.calibration_images, args.data_dir) if args.int8 else None
    categories = meta.categories if meta is not None else None
    eval_set = (
        labelled_set(args.eval_data, pp, spec.in_chans, args.eval_images, args.data_dir, categories) if args.eval_data else None
    )
    return _report(args, export_model(model, args.output, args.format, eval_set=eval_set, **_options(args, resolution, calib)))


def _options(args: argparse.Namespace, resolution: int, calib: Any) -> dict[str, Any]:
    """The export options every task shares, from the command line."""
    return {
        "resolution": resolution,
        "int8": args.int8,
        "calibration": calib,
        "tolerance": args.tolerance,
        "min_agreement": args.min_agreement,
    }


def _report(args: argparse.Namespace, report: Any) -> int:
    """Print what was written and checked (JSON with --json); exit 0."""
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _export_dense(args: argparse.Namespace, model: Any, meta: WeightsMeta | None) -> int:
    """A detector's raw outputs (anchors beside) or a segmenter's full-size logits, any format, fp32 or int8."""
    from mnv3.deploy.calibration import FASHION_MNIST, FASHION_SCENES, calibration_images
    from mnv3.deploy.detection import export_detector
    from mnv3.deploy.loading import preprocessing_for
    from mnv3.deploy.segmentation import export_segmenter
    from mnv3.train.eval_job import detector_classes

    spec = model.spec
    task = "detector" if spec.detection is not None else "segmenter"
    given = [f for f, v in (("--eval-data", args.eval_data), ("--eval-images", args.eval_images)) if v is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: top-1 accuracy is for classifiers; a {task} export is checked against PyTorch on its raw outputs"
        )
    if args.calibration == FASHION_MNIST:
        raise ValueError(
            f"--calibration {FASHION_MNIST}: a {task} calibrates on scenes; use --calibration {FASHION_SCENES} or a folder of images"
        )
    default = (
        meta.preprocessing.crop if meta is not None else (spec.detection.image_size[0] if spec.detection is not None else 320)
    )
    resolution = args.resolution or default
    pp = dataclasses.replace(
        preprocessing_for(meta, resolution, spec.in_chans), resize=resolution
    )  # dense eval resizes to the square
    calib = calibration_images(args.calibration, pp, spec.in_chans, args.calibration_images, args.data_dir) if args.int8 else None
    if spec.detection is not None:
        classes = detector_classes(spec, meta)
    else:
        names = list(meta.categories) if meta is not None else []
        classes = names if len(names) == spec.num_classes else [f"class {i}" for i in range(spec.num_classes)]
    extra: dict[str, Any] = {"categories": classes}
    if meta is not None:
        extra["preprocessing"] = dataclasses.asdict(meta.preprocessing)
    options = _options(args, resolution, calib)
    if spec.detection is not None:
        return _report(args, export_detector(model, args.output, args.format, metadata=extra, nms=args.nms, **options))
    return _report(args, export_segmenter(model, args.output, args.format, metadata=extra, **options))
