"""An SSDLite detector (paper §6.3) to a checked, verified ONNX file, up to its raw outputs.

The graph takes images (N, 3, H, W) and returns ``bbox_regression`` (N, A, 4: box codes on the anchors) and
``cls_logits`` (N, A, C: class 0 the background). The anchors depend only on the input size, so they are
not in the graph: they are written beside it as ``<name>.anchors.npy`` (A, 4; xyxy in input pixels, the
outputs' order), and the box coder and post-processing settings go into the ONNX metadata. Decoding and
NMS run outside the graph (``mnv3.models.boxes.decode_boxes`` + ``torchvision.ops.batched_nms`` do what
``SSDLite.postprocess`` does). Only ONNX fp32 is supported for detectors.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnv3.deploy.export import FP32_TOLERANCE, ExportReport, ParityReport, checked_output
from mnv3.deploy.prepare import ExpectedOps, export_ready
from mnv3.deploy.runtimes import Format, require

OUTPUTS = ("bbox_regression", "cls_logits")


class RawDetector(nn.Module):
    """A detector up to its raw head outputs, as a tuple of tensors (what the exported graph returns)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bbox_regression (N, A, 4), cls_logits (N, A, C)) of a batch."""
        out = self.detector(x)
        return out["bbox_regression"], out["cls_logits"]


def anchors_path(out: str | Path) -> Path:
    """Where the anchors of an exported detector go: ``model.onnx`` -> ``model.anchors.npy``."""
    return Path(out).with_suffix(".anchors.npy")


def _json_ready(x: Any) -> Any:
    """Enums as their values (for the head spec's settings in the ONNX metadata)."""
    return x.value if isinstance(x, enum.Enum) else str(x)


def detector_metadata(model: nn.Module, anchors_file: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The ONNX metadata of an exported detector: outputs, anchors file, box coder and post-processing settings."""
    det = model.spec.detection
    props = {
        "mnv3.model": model.spec.name,
        "mnv3.outputs": "bbox_regression (N, A, 4): (dx, dy, dw, dh) box codes on the anchors; cls_logits (N, A, C): class 0 = background",
        "mnv3.anchors": f"{anchors_file}: (A, 4) float32, xyxy in input pixels, in the outputs' order",
        "mnv3.box_coder": json.dumps(dataclasses.asdict(det.box_coder), default=_json_ready),
        "mnv3.postprocess": json.dumps(dataclasses.asdict(det.postprocess), default=_json_ready),
        "mnv3.decoding": "outside the graph: decode the codes on the anchors with the box coder, clip, score, per-class NMS",
    }
    props.update({f"mnv3.{k}": v if isinstance(v, str) else json.dumps(v, default=_json_ready) for k, v in (extra or {}).items()})
    return props


def _set_metadata(path: Path, props: dict[str, str]) -> None:
    """Write ``props`` into the ONNX file's metadata_props, in place."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))


@torch.no_grad()
def compare_raw(model: nn.Module, path: Path, samples: torch.Tensor) -> ParityReport:
    """Both raw outputs of ONNX Runtime against PyTorch on ``samples``: max abs difference, per-anchor class agreement."""
    from mnv3.deploy.onnx_backend import OrtPredictor

    ref = [t.float().numpy() for t in RawDetector(model.eval())(samples)]
    predictor = OrtPredictor(path, threads=max(1, min(2, os.cpu_count() or 1)))
    names = [o.name for o in predictor.session.get_outputs()]
    got = dict(zip(names, predictor.session.run(None, {predictor.input_name: predictor.feed(samples)}), strict=True))
    missing = [n for n in OUTPUTS if n not in got]
    if missing:
        raise ValueError(f"the exported graph lacks the output(s) {missing}; it has {names}")
    diffs = [float(np.abs(r - got[n]).max()) for r, n in zip(ref, OUTPUTS, strict=True)]
    agree = float((ref[1].argmax(-1) == got["cls_logits"].argmax(-1)).mean())
    return ParityReport(len(samples), max(diffs), max(float(np.abs(r).max()) for r in ref), agree)


def export_detector(
    model: nn.Module,
    out: str | Path,
    fmt: Format | str = Format.ONNX,
    *,
    resolution: int = 320,
    int8: bool = False,
    tolerance: float = FP32_TOLERANCE,
    metadata: dict[str, Any] | None = None,
    check_graph: bool = True,
) -> ExportReport:
    """Export a detector's raw outputs to ONNX with its anchors beside it; verify against PyTorch; write both atomically."""
    fmt = Format(fmt)
    if fmt is not Format.ONNX or int8:
        asked = f"{fmt.value}{' int8' if int8 else ''}"
        raise ValueError(f"a detector exports to ONNX fp32 only (raw boxes and scores, decoding and NMS outside the graph), not {asked}")
    require(fmt)
    if getattr(getattr(model, "spec", None), "detection", None) is None:
        raise ValueError("export_detector takes an mnv3 detector (a spec with a detection head); export classifiers with export_model")
    out = checked_output(out, fmt)
    from mnv3.deploy.onnx_backend import check_onnx_file, export_onnx

    model = model.eval()
    size = (resolution, resolution)
    example = torch.randn(1, model.spec.in_chans, *size, generator=torch.Generator().manual_seed(0))
    ready = export_ready(model)
    ready(example)  # the anchors of this size are computed now, outside the traced graph
    anchors = model.anchors(size).numpy().astype(np.float32)
    anchors_out = anchors_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp, tmp_anchors = tmp_dir / out.name, tmp_dir / anchors_out.name
    t0 = time.perf_counter()
    try:
        export_onnx(RawDetector(ready), example, tmp, output_names=OUTPUTS)
        graph = check_onnx_file(tmp, ExpectedOps.of(model))
        if check_graph:
            graph.raise_if_failed()
        _set_metadata(tmp, detector_metadata(model, anchors_out.name, metadata))
        export_s = time.perf_counter() - t0
        buf = io.BytesIO()
        np.save(buf, anchors)
        tmp_anchors.write_bytes(buf.getvalue())
        samples = torch.randn(8, model.spec.in_chans, *size, generator=torch.Generator().manual_seed(1))
        parity = compare_raw(model, tmp, samples)
        if parity.max_abs > tolerance:
            raise ValueError(f"the exported onnx detector differs from PyTorch by {parity.max_abs:.3g} (> tolerance {tolerance:g}); nothing written")
        os.replace(tmp_anchors, anchors_out)  # the anchors first: a model file always has its anchors beside it
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    notes = [
        f"anchors: {anchors_out} ({len(anchors)} x 4, xyxy in {resolution}x{resolution} input pixels)",
        f"outputs: {', '.join(OUTPUTS)}; decoding and NMS run outside the graph (box coder and NMS settings in the ONNX metadata)",
    ]
    return ExportReport(fmt.value, str(out), "fp32", resolution, out.stat().st_size, export_s, graph, parity, notes)
