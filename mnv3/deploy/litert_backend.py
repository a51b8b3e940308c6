"""LiteRT export (litert-torch, .tflite) with channels-last input, and loading it in the LiteRT interpreter.

TFLite kernels are NHWC; a channels-first input makes the converter add a TRANSPOSE (and keep the
stem's padding as a separate PAD) in front of the network, so mnv3 exports take NHWC images
(``x.permute(0, 2, 3, 1)``), as the paper's TFLite models did. The SE gates are folded to a ReLU6
fused into the SE conv (:func:`~mnv3.deploy.prepare.fold_se_gate_`); LiteRT's own lowering of
hard-sigmoid keeps one MUL per gate (and a ``clamp(0, 1)`` gate becomes ``RELU_0_TO_1``, which the
XNNPACK delegate does not take: the network falls apart into partitions).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnv3.deploy.graph_check import GraphReport, check_litert
from mnv3.deploy.predictor import Predictor
from mnv3.deploy.prepare import ExpectedOps


def _quiet() -> None:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def channels_last_io(module: nn.Module) -> nn.Module:
    """Wrap ``module`` to take NHWC input (litert-torch's own wrapper)."""
    import litert_torch

    return litert_torch.to_channel_last_io(module, args=[0])


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def export_litert(module: nn.Module, example: torch.Tensor, path: Path, *, quantizer=None) -> None:
    """Convert with litert-torch and write the flatbuffer; ``quantizer`` marks a PT2E-quantized module."""
    _quiet()
    import litert_torch

    kwargs = {}
    if quantizer is not None:
        from litert_torch.quantize.quant_config import QuantConfig

        kwargs["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
    try:
        edge = litert_torch.convert(module, (example,), **kwargs)
    except Exception as e:  # noqa: BLE001 - the converter raises many types for unsupported graphs
        raise ValueError(f"litert-torch cannot convert this model: {type(e).__name__}: {e}") from None
    edge.export(str(path))


def op_names(path: str | Path) -> list[str]:
    """Op names of the execution plan after the default (XNNPACK) delegate is applied."""
    p = LiteRTPredictor(path, threads=1)
    return [o["op_name"] for o in p.interpreter._get_ops_details()]


def check_litert_file(path: str | Path, expected: ExpectedOps) -> GraphReport:
    return check_litert(op_names(path), expected)


def _output_position(name: str) -> tuple[int, str]:
    """Sort key of a LiteRT output: the ``output_<k>`` number litert-torch gives it (module order), then the name."""
    m = re.search(r"output_(\d+)", name)
    return (int(m.group(1)) if m else 1 << 30, name)


class LiteRTPredictor(Predictor):
    """The LiteRT interpreter (XNNPACK delegate on by default) on one .tflite file; NHWC or NCHW input."""

    name = "litert"

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        _quiet()
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError for bad files
            raise ValueError(f"LiteRT cannot load {path}: {e}") from None
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.input_shape = tuple(int(s) for s in inp["shape"])
        self.input_dtype = inp["dtype"]
        self.input_quant = inp.get("quantization", (0.0, 0))
        # litert-torch names the outputs ``..._output_<k>_...`` in the module's order; the flatbuffer's own order may differ
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: _output_position(d["name"]))
        self.outputs = [
            (d["index"], d.get("quantization", (0.0, 0)) if np.issubdtype(d["dtype"], np.integer) else (0.0, 0)) for d in outs
        ]
        self.output_index, self.output_quant = self.outputs[0]

    def feed(self, x: torch.Tensor) -> np.ndarray:
        x = x.detach().float()
        if tuple(x.shape) != self.input_shape and tuple(to_nhwc(x).shape) == self.input_shape:
            x = to_nhwc(x)
        if tuple(x.shape) != self.input_shape:
            raise ValueError(f"this LiteRT model takes input of shape {self.input_shape}, got {tuple(x.shape)}")
        a = x.numpy()
        scale, zero = self.input_quant
        if np.issubdtype(self.input_dtype, np.integer) and scale:
            info = np.iinfo(self.input_dtype)
            a = np.clip(np.round(a / scale) + zero, info.min, info.max)
        return np.ascontiguousarray(a.astype(self.input_dtype))

    def _output(self, index: int, quant: tuple[float, int]) -> np.ndarray:
        """One output tensor after ``invoke``, dequantized when the file returns integers."""
        y = self.interpreter.get_tensor(index)
        scale, zero = quant
        return (y.astype(np.float32) - zero) * scale if scale else y.copy()

    def run(self, fed: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, fed)
        self.interpreter.invoke()
        return self._output(self.output_index, self.output_quant)

    def run_outputs(self, fed: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input_index, fed)
        self.interpreter.invoke()
        return [self._output(i, q) for i, q in self.outputs]
