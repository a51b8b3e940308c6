"""One call from a PyTorch MobileNetV3 to a checked, verified ONNX / ExecuTorch / LiteRT file.

``export_model``: fold BN (and the SE gates where the runtime lacks hard-sigmoid), export, check
the graph (:mod:`mnv3.deploy.graph_check`), optionally quantize to int8, then run the file in its
runtime against PyTorch on sample inputs. The file appears at ``out`` only when every step
passed (temporary path, rename at the end); a failure leaves nothing behind. The dense tasks
(:mod:`mnv3.deploy.detection`, :mod:`mnv3.deploy.segmentation`) go through the same path with
their own :class:`Outputs` (several outputs, class agreement per anchor / pixel), files beside the
model (a detector's anchors) and metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnv3.deploy.calibration import LabelledSet
from mnv3.deploy.graph_check import GraphReport
from mnv3.deploy.predictor import Predictor
from mnv3.deploy.prepare import ExpectedOps, export_ready
from mnv3.deploy.runtimes import FILE_SUFFIX, Format, require

FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Outputs:
    """What an exported graph returns and how parity is judged: the output names, which one holds class scores, on which axis."""

    names: tuple[str, ...] = ("logits",)
    class_output: int = 0
    class_axis: int = 1
    agreement: str = "top-1"  # how reports name the class agreement ("per-anchor class", "per-pixel argmax")


CLASSIFIER = Outputs()


@dataclass
class ParityReport:
    """How the exported file's logits compare with PyTorch's on the same inputs."""

    samples: int
    max_abs: float
    ref_max_abs: float
    top1_agreement: float
    agreement_of: str = "top-1"
    eval_name: str | None = None
    accuracy_torch: float | None = None
    accuracy_export: float | None = None

    @property
    def accuracy_drop(self) -> float | None:
        """Points of top-1 accuracy lost by the export (positive = worse), when a labelled set was given."""
        if self.accuracy_torch is None or self.accuracy_export is None:
            return None
        return 100.0 * (self.accuracy_torch - self.accuracy_export)

    def summary(self) -> str:
        lines = [
            f"vs PyTorch on {self.samples} inputs: max abs diff {self.max_abs:.3g} (logits up to {self.ref_max_abs:.3g}), "
            f"{self.agreement_of} agreement {100 * self.top1_agreement:.1f} %"
        ]
        if self.accuracy_torch is not None and self.accuracy_export is not None:
            lines.append(
                f"accuracy on {self.eval_name}: PyTorch fp32 {100 * self.accuracy_torch:.2f} %, exported "
                f"{100 * self.accuracy_export:.2f} % (drop {self.accuracy_drop:.2f} points)"
            )
        return "\n".join(lines)


@dataclass
class ExportReport:
    """What ``export_model`` wrote and what it checked."""

    format: str
    path: str
    precision: str
    resolution: int
    size_bytes: int
    export_s: float
    graph: GraphReport | None
    parity: ParityReport | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"wrote {self.path} ({self.format}, {self.precision}, {self.resolution}x{self.resolution}, {self.size_bytes / 1e6:.2f} MB) in {self.export_s:.1f} s"
        ]
        if self.graph is not None:
            lines.append(self.graph.summary())
        if self.parity is not None:
            lines.append(self.parity.summary())
        lines += self.notes
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.parity is not None:
            d["parity"]["accuracy_drop"] = self.parity.accuracy_drop
        return d


def load_predictor(fmt: Format | str, path: str | Path, threads: int = 1) -> Predictor:
    """The runtime of ``fmt`` loaded on ``path`` with a pinned thread count."""
    fmt = Format(fmt)
    require(fmt)
    if fmt is Format.ONNX:
        from mnv3.deploy.onnx_backend import OrtPredictor

        return OrtPredictor(path, threads)
    if fmt is Format.EXECUTORCH:
        from mnv3.deploy.executorch_backend import ExecuTorchPredictor

        return ExecuTorchPredictor(path, threads)
    from mnv3.deploy.litert_backend import LiteRTPredictor

    return LiteRTPredictor(path, threads)


def build_artifact(
    model: nn.Module,
    fmt: Format | str,
    path: Path,
    example: torch.Tensor,
    *,
    int8: bool = False,
    calibration: torch.Tensor | None = None,
    mnv3_flow: bool = True,
    workdir: Path | None = None,
    output_names: tuple[str, ...] = CLASSIFIER.names,
) -> GraphReport | None:
    """Write ``model`` as ``fmt`` to ``path`` (no verification) and return the graph check.

    ``mnv3_flow`` applies mnv3's export rewrites and checks (BN and SE-gate folding, NHWC LiteRT
    input, no ``quant_pre_process``); ``False`` is the runtime's documented default flow, which
    ``mnv3 bench --compare`` uses for the peer model. ``model`` must be in eval mode and may return a
    tuple of tensors (``output_names`` names them in ONNX; the other formats keep their order).
    """
    fmt = Format(fmt)
    require(fmt)
    if int8 and (calibration is None or len(calibration) == 0):
        raise ValueError("int8 export needs calibration images (--calibration FOLDER or fashion-mnist)")
    expected = ExpectedOps.of(model) if mnv3_flow else None
    work = Path(workdir) if workdir is not None else path.parent
    if fmt is Format.ONNX:
        from mnv3.deploy.onnx_backend import check_onnx_file, export_onnx

        ready = export_ready(model) if mnv3_flow else model
        if not int8:
            export_onnx(ready, example, path, output_names=output_names)
            return check_onnx_file(path, expected) if expected else None
        from mnv3.deploy.quantize import quantize_onnx_static

        with tempfile.TemporaryDirectory(dir=work, prefix=".mnv3-onnx-") as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            export_onnx(ready, example, fp32, output_names=output_names)
            assert calibration is not None
            quantize_onnx_static(fp32, path, calibration, pre_process=not mnv3_flow)
        return check_onnx_file(path, expected) if expected else None
    if fmt is Format.EXECUTORCH:
        from mnv3.deploy.executorch_backend import lower_to_xnnpack

        module: nn.Module = export_ready(model, fold_gate=True) if mnv3_flow else model
        if int8:
            from mnv3.deploy.quantize import pt2e_ptq, share_quantization_across_pads_, xnnpack_quantizer

            assert calibration is not None
            module = pt2e_ptq(module, example, calibration, xnnpack_quantizer())
            if mnv3_flow:
                share_quantization_across_pads_(module)
        data, report = lower_to_xnnpack(module, example, expected)
        path.write_bytes(data)
        return report
    from mnv3.deploy.litert_backend import channels_last_io, check_litert_file, export_litert, to_nhwc

    module = export_ready(model, fold_gate=True) if mnv3_flow else model
    ex = example
    calib = calibration
    if mnv3_flow:
        module, ex = channels_last_io(module), to_nhwc(example)
        calib = to_nhwc(calibration) if calibration is not None else None
    quantizer = None
    if int8:
        from mnv3.deploy.quantize import litert_quantizer, pt2e_ptq, share_quantization_across_pads_

        quantizer = litert_quantizer()
        assert calib is not None
        module = pt2e_ptq(module, ex, calib, quantizer, fold_quantize=False)
        if mnv3_flow:
            share_quantization_across_pads_(module)
    export_litert(module, ex, path, quantizer=quantizer)
    if expected is None:
        return None
    report = check_litert_file(path, expected)
    if int8 and report.partitions is not None and report.partitions > 1:
        # LiteRT's int8 graphs keep QUANTIZE/DEQUANTIZE around float ops; XNNPACK takes them in pieces
        report.problems = [p for p in report.problems if "partitions" not in p]
    return report


@torch.no_grad()
def compare(
    model: nn.Module,
    predictor: Predictor,
    samples: torch.Tensor,
    eval_set: LabelledSet | None = None,
    batch: int = 1,
    outputs: Outputs = CLASSIFIER,
) -> ParityReport:
    """Largest difference over every output and class agreement on ``samples``; accuracies of both on ``eval_set`` if given."""
    model.eval()
    out = model(samples)
    ref = [t.float().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]
    got = predictor.predict_outputs(samples, batch)
    if len(got) != len(ref) or any(r.shape != g.shape for r, g in zip(ref, got, strict=False)):
        raise ValueError(
            f"the exported graph returns shapes {[g.shape for g in got]}, PyTorch {[r.shape for r in ref]} ({', '.join(outputs.names)})"
        )
    c, axis = outputs.class_output, outputs.class_axis
    report = ParityReport(
        samples=len(samples),
        max_abs=max(float(np.abs(r - g).max()) for r, g in zip(ref, got, strict=True)),
        ref_max_abs=max(float(np.abs(r).max()) for r in ref),
        top1_agreement=float((ref[c].argmax(axis) == got[c].argmax(axis)).mean()),
        agreement_of=outputs.agreement,
    )
    if eval_set is not None:
        labels = eval_set.labels.numpy()
        t = np.concatenate([model(eval_set.images[i : i + 256]).float().numpy() for i in range(0, len(eval_set.images), 256)])
        e = predictor.predict_batches(eval_set.images, batch)
        report.eval_name = eval_set.name
        report.accuracy_torch = float((t.argmax(1) == labels).mean())
        report.accuracy_export = float((e.argmax(1) == labels).mean())
    return report


def _spatial(model: nn.Module, resolution: int) -> int:
    spec = getattr(model, "spec", None)
    stride = spec.total_stride if spec is not None else 32
    if resolution < stride:
        raise ValueError(f"--resolution {resolution} is smaller than the network's total stride {stride}; use at least {stride}")
    return resolution


def checked_output(out: str | Path, fmt: Format) -> Path:
    """The output path, refused when it is a folder or lacks the format's suffix."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name such as {out / ('model' + FILE_SUFFIX[fmt])}")
    if out.suffix != FILE_SUFFIX[fmt]:
        raise ValueError(f"a {fmt.value} file should end in {FILE_SUFFIX[fmt]}, got {out.name!r}")
    return out


def metadata_path(out: str | Path) -> Path:
    """Where a .pte / .tflite export's metadata goes (ONNX keeps it inside): ``model.pte`` -> ``model.metadata.json``."""
    return Path(out).with_suffix(".metadata.json")


def set_onnx_metadata(path: Path, props: Mapping[str, str]) -> None:
    """Write ``props`` into the ONNX file's metadata_props, in place."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, dict(props))
    onnx.save(proto, str(path))


def export_model(
    model: nn.Module,
    out: str | Path,
    fmt: Format | str,
    *,
    resolution: int = 224,
    int8: bool = False,
    calibration: torch.Tensor | None = None,
    samples: torch.Tensor | None = None,
    eval_set: LabelledSet | None = None,
    tolerance: float = FP32_TOLERANCE,
    min_agreement: float | None = None,
    verify: bool = True,
    check_graph: bool = True,
    outputs: Outputs = CLASSIFIER,
    beside: Mapping[str, bytes] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export, check and verify; write ``out`` atomically. Raises ValueError with the reason on any failure.

    fp32 exports must match PyTorch within ``tolerance`` (max abs difference over every output);
    int8 exports report the class agreement of ``outputs`` (and fail below ``min_agreement`` when
    given) and the accuracy of both on ``eval_set``. ``samples`` default to the calibration images,
    else 8 random inputs. ``beside`` (file name -> bytes) is written next to ``out`` and
    ``metadata`` into the ONNX file (else ``<name>.metadata.json`` beside it), with the same atomicity:
    the extra files are renamed into place first, so a model file always has them.
    """
    fmt = Format(fmt)
    require(fmt)
    out = checked_output(out, fmt)
    model = model.eval()
    spec = getattr(model, "spec", None)
    in_chans = spec.in_chans if spec is not None else 3
    res = _spatial(model, resolution)
    example = torch.randn(1, in_chans, res, res, generator=torch.Generator().manual_seed(0))
    if calibration is not None and tuple(calibration.shape[1:]) != (in_chans, res, res):
        raise ValueError(
            f"calibration images have shape {tuple(calibration.shape[1:])}, the export expects {(in_chans, res, res)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    tmp = tmp_dir / out.name
    t0 = time.perf_counter()
    try:
        graph = build_artifact(
            model, fmt, tmp, example, int8=int8, calibration=calibration, workdir=tmp_dir, output_names=outputs.names
        )
        if check_graph and graph is not None:
            graph.raise_if_failed()
        extra = dict(beside or {})
        if metadata is not None and fmt is Format.ONNX:
            set_onnx_metadata(tmp, metadata)
        elif metadata is not None:
            extra[metadata_path(out).name] = (json.dumps(dict(metadata), indent=2) + "\n").encode()
        for name, data in extra.items():
            (tmp_dir / name).write_bytes(data)
        export_s = time.perf_counter() - t0
        parity = None
        if verify:
            if samples is None:
                samples = (
                    calibration[:32]
                    if calibration is not None
                    else torch.randn(8, in_chans, res, res, generator=torch.Generator().manual_seed(1))
                )
            predictor = load_predictor(fmt, tmp, threads=max(1, min(2, os.cpu_count() or 1)))
            parity = compare(model, predictor, samples, eval_set, outputs=outputs)
            del predictor
            if not int8 and parity.max_abs > tolerance:
                raise ValueError(
                    f"the exported {fmt.value} model differs from PyTorch by {parity.max_abs:.3g} (> tolerance {tolerance:g}); nothing written"
                )
            if int8 and min_agreement is not None and parity.top1_agreement < min_agreement:
                raise ValueError(
                    f"the int8 {fmt.value} model agrees with fp32 PyTorch on {outputs.agreement} for {100 * parity.top1_agreement:.1f} % "
                    f"(< {100 * min_agreement:.1f} %); nothing written"
                )
        for name in extra:  # the files beside it first: a model file always has its anchors / metadata
            os.replace(tmp_dir / name, out.parent / name)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return ExportReport(fmt.value, str(out), "int8" if int8 else "fp32", res, out.stat().st_size, export_s, graph, parity)
