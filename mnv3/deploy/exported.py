"""An exported file (ONNX / ExecuTorch / LiteRT, fp32 or int8) run as the PyTorch model it was exported from.

:class:`ExportedModel` is an ``nn.Module`` whose ``forward`` returns what the source model's does (a
classifier's or segmenter's logits; a detector's raw outputs and anchors) computed by the exported graph in
its runtime, so ``mnv3 eval --artifact FILE`` scores it with the task's own data, metric and post-processing
(a detector's decoding + NMS are the source model's ``postprocess``, run outside the graph as the export's
metadata says, or the graph's own for a file exported with ``--nms``). That is how an int8 file's accuracy drop is measured: same test set, same meter, only the
forward pass differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnv3.deploy.detection_nms import DECODING as NMS_DECODING
from mnv3.deploy.detection_nms import OUTPUTS as NMS_OUTPUTS
from mnv3.deploy.export import load_predictor, metadata_path
from mnv3.deploy.runtimes import FILE_SUFFIX, Format


def format_of(path: str | Path) -> Format:
    """The export format of a file, from its suffix (``.onnx``, ``.pte``, ``.tflite``)."""
    suffix = Path(path).suffix
    for fmt, s in FILE_SUFFIX.items():
        if s == suffix:
            return fmt
    known = ", ".join(f"{s} ({f.value})" for f, s in FILE_SUFFIX.items())
    raise ValueError(f"{Path(path).name}: not an exported model file (expected {known}); export one with `mnv3 export`")


def read_metadata(path: str | Path, fmt: Format) -> dict[str, str]:
    """The ``mnv3.*`` metadata of an export: ONNX metadata_props, else ``<name>.metadata.json``; empty when it has none."""
    if fmt is Format.ONNX:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    side = metadata_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


class ExportedModel(nn.Module):
    """``reference``'s forward pass computed by the exported file ``path`` (batch 1 per call, as static graphs need).

    ``reference`` is the model the file was exported from (the same weights file): it supplies the spec, a
    detector's anchors and post-processing, and is never run. A file exported from another network is refused.
    """

    def __init__(self, path: str | Path, reference: nn.Module, *, threads: int = 1, fmt: Format | str | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.fmt = Format(fmt) if fmt is not None else format_of(self.path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"exported file {self.path} does not exist; write it with `mnv3 export --weights SOURCE --format {self.fmt.value} -o {self.path}`"
            )
        self.spec = reference.spec
        meta = read_metadata(self.path, self.fmt)
        exported_from = meta.get("mnv3.model")
        if exported_from is not None and exported_from != self.spec.name:
            raise ValueError(
                f"{self.path.name} was exported from {exported_from!r}, not from {self.spec.name!r}: "
                "evaluate it with the weights it was exported from"
            )
        self.metadata = meta
        self.nms_in_graph = meta.get("mnv3.decoding") == NMS_DECODING  # mnv3 export --nms
        self.reference = reference.eval()
        self.predictor = load_predictor(self.fmt, self.path, threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """The source model's outputs for ``x`` (N, C, H, W), from the exported graph.

        A detector exported with its NMS (``mnv3 export --nms``) returns ``{"detections": [per-image dicts],
        "input_size": (H, W)}``, which :meth:`postprocess` passes on.
        """
        x = x.detach().to("cpu", torch.float32)
        try:
            if self.nms_in_graph:
                dets = [self.predictor.run_outputs(self.predictor.feed(x[i : i + 1])) for i in range(len(x))]
                return {"detections": [{k: torch.from_numpy(np.ascontiguousarray(o)) for k, o in zip(NMS_OUTPUTS, d, strict=True)} for d in dets],
                        "input_size": tuple(x.shape[-2:])}  # fmt: skip
            outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in self.predictor.predict_outputs(x, batch=1)]
        except Exception as e:  # a runtime's shape error names only tensor indices
            raise ValueError(
                f"{self.path.name} ({self.fmt.value}) cannot run an input of {tuple(x.shape[1:])}: {e}. "
                "Evaluate at the size it was exported at (mnv3 export --resolution)"
            ) from e
        if self.spec.detection is not None:
            regression, logits = outs
            anchors = self.reference.anchors(tuple(x.shape[-2:]), dtype=regression.dtype)
            return {"bbox_regression": regression, "cls_logits": logits, "anchors": anchors}
        return outs[0]

    def postprocess(
        self, raw: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]], input_size: tuple[int, int] | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """A detector's decoding and per-class NMS: the source model's (outside the graph), or the graph's own (``--nms``)."""
        if "detections" in raw:
            size = tuple(input_size or raw["input_size"])
            if any(tuple(s) != size for s in image_sizes):
                raise ValueError(
                    f"{self.path.name} clips its boxes to the {size[0]}x{size[1]} input inside the graph; images of other sizes "
                    f"({sorted(set(map(tuple, image_sizes)))}) need a file exported without --nms"
                )
            return raw["detections"]
        return self.reference.postprocess(raw, image_sizes, input_size)
