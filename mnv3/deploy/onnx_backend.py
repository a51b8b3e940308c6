"""ONNX export (torch.onnx dynamo exporter, opset 18: native HardSwish / HardSigmoid) and ONNX Runtime loading."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnv3.deploy.graph_check import GraphReport, check_onnx
from mnv3.deploy.predictor import Predictor
from mnv3.deploy.prepare import ExpectedOps

OPSET = 18  # >= 14 has HardSwish; 18 is the dynamo exporter's native opset


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool = True, output_names: Sequence[str] = ("logits",)
) -> None:
    """Write ``model`` as one self-contained .onnx file (weights inline); batch dimension dynamic by default."""
    kwargs: dict = {}
    if dynamic_batch:
        # size-1 dims are specialised by torch.export, so trace with two images and mark the batch dynamic
        example = example[:1].expand(2, *example.shape[1:]).contiguous()
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["input"],
                output_names=list(output_names),
                **kwargs,
            )
    except Exception as e:  # noqa: BLE001 - the exporter wraps torch.export's many failure types
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"torch.onnx cannot capture this model for ONNX: {type(e).__name__}: {first}") from None
    if program is None:
        raise ValueError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)


def check_onnx_file(path: Path, expected: ExpectedOps) -> GraphReport:
    """Load the graph (without weights) and run :func:`check_onnx` on it."""
    import onnx

    return check_onnx(onnx.load(str(path), load_external_data=False), expected)


def session_options(threads: int, *, profile_prefix: str | None = None):
    """ORT options with a pinned intra-op thread count, sequential execution and all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


class OrtPredictor(Predictor):
    """An ONNX Runtime CPU session on one .onnx file."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 1, *, profile_prefix: str | None = None) -> None:
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(
                str(path), session_options(threads, profile_prefix=profile_prefix), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise ValueError(f"ONNX Runtime cannot load {path}: {e}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def feed(self, x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().float().numpy())

    def run(self, fed: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: fed})[0]

    def run_outputs(self, fed: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: fed})
