"""An SSDLite detector (paper §6.3) to a checked, verified ONNX / ExecuTorch / LiteRT file, up to its raw outputs.

The graph takes images (N, 3, H, W) (LiteRT: NHWC, as for classifiers) and returns ``bbox_regression``
(N, A, 4: box codes on the anchors) and ``cls_logits`` (N, A, C: class 0 the background). The anchors
depend only on the input size, so they are not in the graph: they are written beside it as
``<name>.anchors.npy`` (A, 4; xyxy in input pixels, the outputs' order) for every format, and the box coder
and post-processing settings go into the metadata (ONNX metadata_props, else ``<name>.metadata.json``).
Decoding and NMS run outside the graph (``mnv3.models.boxes.decode_boxes`` + ``torchvision.ops.batched_nms``
do what ``SSDLite.postprocess`` does). Export, int8 calibration and verification are
:func:`mnv3.deploy.export.export_model`'s, with parity over both outputs and per-anchor class agreement.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnv3.deploy.detection_nms import DECODING as NMS_DECODING
from mnv3.deploy.detection_nms import OUTPUTS as NMS_OUTPUTS
from mnv3.deploy.detection_nms import append_postprocess, check_nms_format, check_postprocess, postprocess_graph
from mnv3.deploy.export import ExportReport, Outputs, _spatial, checked_output, export_model, load_predictor, metadata_path
from mnv3.deploy.onnx_backend import OPSET
from mnv3.deploy.runtimes import Format

OUTPUTS = ("bbox_regression", "cls_logits")
DETECTOR_OUTPUTS = Outputs(OUTPUTS, class_output=1, class_axis=-1, agreement="per-anchor class")


class RawDetector(nn.Module):
    """A detector up to its raw head outputs, as a tuple of tensors (what the exported graph returns)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.spec = detector.spec  # input channels and total stride for the export's checks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bbox_regression (N, A, 4), cls_logits (N, A, C)) of a batch."""
        return self.detector.forward_head(self.detector.forward_features(x))  # no anchors in the graph


def anchors_path(out: str | Path) -> Path:
    """Where the anchors of an exported detector go: ``model.onnx`` -> ``model.anchors.npy``."""
    return Path(out).with_suffix(".anchors.npy")


def json_ready(x: Any) -> Any:
    """Enums as their values, anything else as its string (for spec settings in the metadata)."""
    return x.value if isinstance(x, enum.Enum) else str(x)


def task_metadata(name: str, props: dict[str, str], extra: dict[str, Any] | None) -> dict[str, str]:
    """``mnv3.*`` metadata of a dense export: the model name, the task's own entries, then ``extra`` (JSON where not a string)."""
    out = {"mnv3.model": name, **props}
    out.update({f"mnv3.{k}": v if isinstance(v, str) else json.dumps(v, default=json_ready) for k, v in (extra or {}).items()})
    return out


def detector_metadata(model: nn.Module, anchors_file: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The metadata of an exported detector: outputs, anchors file, box coder and post-processing settings."""
    det = model.spec.detection
    props = {
        "mnv3.task": "detection",
        "mnv3.outputs": "bbox_regression (N, A, 4): (dx, dy, dw, dh) box codes on the anchors; cls_logits (N, A, C): class 0 = background",
        "mnv3.anchors": f"{anchors_file}: (A, 4) float32, xyxy in input pixels, in the outputs' order",
        "mnv3.box_coder": json.dumps(dataclasses.asdict(det.box_coder), default=json_ready),
        "mnv3.postprocess": json.dumps(dataclasses.asdict(det.postprocess), default=json_ready),
        "mnv3.decoding": "outside the graph: decode the codes on the anchors with the box coder, clip, score, per-class NMS",
    }
    return task_metadata(model.spec.name, props, extra)


def export_detector(
    model: nn.Module,
    out: str | Path,
    fmt: Format | str = Format.ONNX,
    *,
    resolution: int = 320,
    metadata: dict[str, Any] | None = None,
    nms: bool = False,
    **options: Any,
) -> ExportReport:
    """Export a detector's raw outputs with its anchors beside it; verify against PyTorch; write everything atomically.

    ``options`` are :func:`~mnv3.deploy.export.export_model`'s (``int8``, ``calibration``, ``tolerance``, ``min_agreement``, ``check_graph``).
    ``nms=True`` (ONNX only) appends decoding + per-class NMS to the graph (:mod:`mnv3.deploy.detection_nms`).
    """
    fmt = Format(fmt)
    if getattr(getattr(model, "spec", None), "detection", None) is None:
        raise ValueError(
            "export_detector takes an mnv3 detector (a spec with a detection head); export classifiers with export_model"
        )
    if nms:
        check_nms_format(fmt.value)
    checked_output(out, fmt)  # refuse a bad name or size before the model runs
    _spatial(model, resolution)
    model = model.eval()
    size = (resolution, resolution)
    with torch.no_grad():  # the anchors of this size are computed now and cached, outside the traced graph
        model(torch.zeros(1, model.spec.in_chans, *size))
    anchors = model.anchors(size).numpy().astype(np.float32)
    side = anchors_path(out)
    meta = detector_metadata(model, side.name, metadata)
    if nms:
        return _export_with_nms(model, Path(out), anchors, meta, resolution, options)
    buf = io.BytesIO()
    np.save(buf, anchors)
    report = export_model(
        RawDetector(model),
        out,
        fmt,
        resolution=resolution,
        outputs=DETECTOR_OUTPUTS,
        beside={side.name: buf.getvalue()},
        metadata=meta,
        **options,
    )
    where = "the ONNX metadata" if fmt is Format.ONNX else str(metadata_path(out))
    report.notes += [
        f"anchors: {side} ({len(anchors)} x 4, xyxy in {resolution}x{resolution} input pixels)",
        f"outputs: {', '.join(OUTPUTS)}; decoding and NMS run outside the graph (box coder and NMS settings in {where})",
    ]
    return report


def _export_with_nms(
    model: nn.Module, out: Path, anchors: np.ndarray, meta: dict[str, str], resolution: int, options: dict[str, Any]
) -> ExportReport:
    """The raw export (checked and verified as usual) + in-graph post-processing, verified on the raw file's outputs."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        raw_path = tmp_dir / f"raw{out.suffix}"
        meta = {**meta, "mnv3.outputs": "boxes (K, 4): xyxy in input pixels; scores (K,); labels (K,): 1..C-1 (0 = background, never output)",
                "mnv3.decoding": NMS_DECODING}
        meta.pop("mnv3.anchors", None)
        report = export_model(RawDetector(model), raw_path, Format.ONNX, resolution=resolution, outputs=DETECTOR_OUTPUTS,
                              metadata=meta, **options)  # fmt: skip
        raw = onnx.load(str(raw_path))
        size = (resolution, resolution)
        post = postprocess_graph(anchors, model.spec.detection, model.spec.num_classes, size, OPSET)
        full_path = tmp_dir / out.name
        onnx.save(append_postprocess(raw, post), str(full_path))
        calibration = options.get("calibration")
        samples = (calibration[:8] if calibration is not None
                   else torch.randn(8, model.spec.in_chans, *size, generator=torch.Generator().manual_seed(1)))  # fmt: skip
        nms_parity = check_postprocess(model, load_predictor(Format.ONNX, raw_path, 1), post, load_predictor(Format.ONNX, full_path, 1), samples)
        os.replace(full_path, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    report.path, report.size_bytes = str(out), out.stat().st_size
    report.notes += [
        "raw outputs checked against PyTorch (above); then decoding + NMS appended to the graph:",
        nms_parity.summary(),
        f"outputs: {', '.join(NMS_OUTPUTS)} for one {resolution}x{resolution} image; anchors are constants of the graph",
    ]
    return report
