"""An LR-ASPP segmenter (paper §6.4) to a checked, verified ONNX / ExecuTorch / LiteRT file.

The graph takes images (N, 3, H, W) (LiteRT: NHWC, as for classifiers) and returns ``logits``
(N, C, H, W) at the input size: the bilinear upsampling of the head's 1/8 output is inside the graph,
so a per-pixel argmax of the output is the label map. Export, int8 calibration and verification are
:func:`mnv3.deploy.export.export_model`'s, with parity as the max abs logit difference and per-pixel
argmax agreement. The classes (and the weights' preprocessing, where weights were given) go into the
metadata (ONNX metadata_props, else ``<name>.metadata.json`` beside the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from mnv3.deploy.detection import task_metadata
from mnv3.deploy.export import ExportReport, Outputs, export_model, metadata_path
from mnv3.deploy.runtimes import Format

SEGMENTER_OUTPUTS = Outputs(("logits",), class_output=0, class_axis=1, agreement="per-pixel argmax")


def segmenter_metadata(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The metadata of an exported segmenter: what the output is, where upsampling and argmax happen, then ``extra``."""
    props = {
        "mnv3.task": "segmentation",
        "mnv3.outputs": "logits (N, C, H, W) at the input size (bilinear upsampling inside the graph); label = argmax over C",
    }
    return task_metadata(model.spec.name, props, extra)


def export_segmenter(
    model: nn.Module,
    out: str | Path,
    fmt: Format | str = Format.ONNX,
    *,
    resolution: int = 320,
    metadata: dict[str, Any] | None = None,
    **options: Any,
) -> ExportReport:
    """Export a segmenter's full-size logits; verify against PyTorch (max abs, per-pixel argmax); write atomically.

    ``options`` are :func:`~mnv3.deploy.export.export_model`'s (``int8``, ``calibration``, ``tolerance``, ``min_agreement``, ``check_graph``).
    """
    fmt = Format(fmt)
    if getattr(getattr(model, "spec", None), "segmentation", None) is None:
        raise ValueError(
            "export_segmenter takes an mnv3 segmenter (a spec with a segmentation head); export classifiers with export_model"
        )
    report = export_model(
        model.eval(),
        out,
        fmt,
        resolution=resolution,
        outputs=SEGMENTER_OUTPUTS,
        metadata=segmenter_metadata(model, metadata),
        **options,
    )
    where = "the ONNX metadata" if fmt is Format.ONNX else str(metadata_path(out))
    report.notes.append(
        f"output: logits (N, {model.spec.num_classes}, {resolution}, {resolution}), upsampled inside the graph; "
        f"argmax over classes outside (classes in {where})"
    )
    return report
