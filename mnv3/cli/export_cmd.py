"""``mnv3 export``: a checked, verified ONNX / ExecuTorch / LiteRT file, fp32 or int8; a detector to ONNX fp32 (raw outputs)."""

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
            "is written only when every step passed. A detector (ssdlite_*) exports to ONNX fp32 only: the graph returns its raw "
            "bbox_regression and cls_logits, the anchors go beside it (<name>.anchors.npy), decoding and NMS run outside."
        ),
    )
    p.add_argument("model", nargs="?", default=None, help="registered name (see `mnv3 models`) or a spec file; optional with --weights")
    add_weights_option(p, note="; random init without")
    p.add_argument("--format", required=True, choices=["onnx", "executorch", "litert"], help="output format / runtime")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx / .pte / .tflite)")
    p.add_argument("--resolution", type=int, default=None, help="input size (default: the weights' crop, else 224; detectors 320)")
    p.add_argument("--int8", action="store_true", help="post-training int8 quantization (needs --calibration)")
    p.add_argument("--calibration", default=None, help="calibration images: a folder (searched recursively) or 'fashion-mnist'")
    p.add_argument("--calibration-images", type=int, default=128, help="how many calibration images (default 128)")
    p.add_argument(
        "--eval-data", default=None, help="labelled set for accuracy before/after: ImageFolder-layout folder or 'fashion-mnist'"
    )
    p.add_argument("--eval-images", type=int, default=None, help="evaluate this many images, spread over the whole set (every class)")
    p.add_argument("--data-dir", default=None, help="where the Fashion-MNIST IDX files are (default: Debian's / the cache)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="fp32: largest allowed max-abs logit difference (default 1e-4)")
    p.add_argument("--min-agreement", type=float, default=None, help="int8: fail below this top-1 agreement with fp32 (0-1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mnv3.deploy.calibration import calibration_images, labelled_set
    from mnv3.deploy.export import export_model
    from mnv3.deploy.loading import preprocessing_for
    from mnv3.deploy.runtimes import require

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
    if spec.detection is not None:
        return _export_detector(args, model, meta)
    resolution = args.resolution or (meta.preprocessing.crop if meta is not None else 224)
    pp = preprocessing_for(meta, resolution, spec.in_chans)
    calib = calibration_images(args.calibration, pp, spec.in_chans, args.calibration_images, args.data_dir) if args.int8 else None
    categories = meta.categories if meta is not None else None
    eval_set = (
        labelled_set(args.eval_data, pp, spec.in_chans, args.eval_images, args.data_dir, categories) if args.eval_data else None
    )
    report = export_model(
        model,
        args.output,
        args.format,
        resolution=resolution,
        int8=args.int8,
        calibration=calib,
        eval_set=eval_set,
        tolerance=args.tolerance,
        min_agreement=args.min_agreement,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def _export_detector(args: argparse.Namespace, model: Any, meta: WeightsMeta | None) -> int:
    """ONNX fp32 of a detector's raw outputs with its anchors beside it, checked against PyTorch."""
    from mnv3.deploy.detection import export_detector
    from mnv3.train.eval_job import detector_classes

    given = [f for f, v in (("--calibration", args.calibration), ("--eval-data", args.eval_data), ("--min-agreement", args.min_agreement)) if v is not None]
    if args.format != "onnx" or args.int8 or given:
        asked = ", ".join([f"--format {args.format}"] * (args.format != "onnx") + ["--int8"] * args.int8 + given)
        raise ValueError(f"{asked}: a detector exports to --format onnx fp32 only (raw boxes and scores; decoding and NMS outside the graph)")
    det = model.spec.detection
    resolution = args.resolution or (meta.preprocessing.crop if meta is not None else det.image_size[0])
    extra: dict[str, Any] = {"categories": detector_classes(model.spec, meta)}
    if meta is not None:
        extra["preprocessing"] = dataclasses.asdict(meta.preprocessing)
    report = export_detector(model, args.output, resolution=resolution, tolerance=args.tolerance, metadata=extra)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0
