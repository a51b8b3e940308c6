"""int8 quantization for MobileNetV3: post-training (PT2E / ONNX Runtime QDQ) and quantization-aware training.

Weights are quantized per output channel everywhere: per-tensor scales collapse depthwise + SE
networks (per-tensor weights lose most of MobileNetV3's accuracy; PyTorch's quantization docs recommend per-channel). Activations use per-tensor
affine scales from a min/max pass over calibration images. Hard-swish stays one op (its
quantized kernels exist in XNNPACK and ONNX Runtime); the ONNX flow deliberately skips
``quant_pre_process``, which splits HardSwish into HardSigmoid + Mul left in float between Q/DQ
pairs (slower than fp32 on Small, peer-latency note).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from mnv3.train.engine import Hooks


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch: int) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        for i in range(0, len(images), batch):
            yield images[i : i + batch]
    else:
        yield from images


def xnnpack_quantizer(*, qat: bool = False):
    """ExecuTorch's XNNPACK quantizer: symmetric int8, per-channel weights (QAT variant with fake-quant)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def litert_quantizer():
    """LiteRT-Torch's PT2E quantizer: static int8, per-channel weights."""
    from litert_torch.quantize import pt2e_quantizer as pq

    return pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


@torch.no_grad()
def pt2e_ptq(
    model: nn.Module, example: torch.Tensor, calibration: torch.Tensor, quantizer, *, fold_quantize: bool = True
) -> nn.Module:
    """Post-training static quantization through torch.export + PT2E: export, observe, convert.

    The exported graph is specialised to ``example``'s shape, so calibration runs image by image.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one image")
    gm = torch.export.export(model.eval(), (example,)).module()
    prepared = prepare_pt2e(gm, quantizer)
    n = example.shape[0]
    for i in range(0, len(calibration) - n + 1, n):
        prepared(calibration[i : i + n].to(example.dtype))
    converted = convert_pt2e(prepared, fold_quantize=fold_quantize)
    for m in converted.modules():  # exported graphs refuse .eval(); converters read the flag
        m.training = False
    return converted


def _is_zero_pad(node: torch.fx.Node) -> bool:
    """``F.pad`` / ``constant_pad_nd`` with value 0 (TF-SAME padding as exported from :class:`SamePad2d`)."""
    if node.op != "call_function":
        return False
    if node.target is torch.ops.aten.constant_pad_nd.default:
        return float(node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0.0)) == 0.0
    if node.target is torch.ops.aten.pad.default:
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
        return mode == "constant" and (value is None or float(value) == 0.0)
    return False


def share_quantization_across_pads_(gm: torch.fx.GraphModule) -> int:
    """Move each zero pad below the quantize / dequantize pair that follows it, in place; returns how many.

    PT2E leaves the paper preset's TF-SAME padding (§5, TF-slim) as ``x -> pad -> q -> dq -> conv``,
    so XNNPACK dequantizes a whole feature map, pads it in float and requantizes it (ExecuTorch
    int8 Large, mnv3 / torchvision: 1.25 before, 1.00 once moved; docs/benchmarks.md). ``x -> q -> dq -> pad -> conv`` is the same
    arithmetic, as zero is exact in every affine int8 scale, and XNNPACK folds a pad that feeds a
    quantized conv into the conv. A pad whose input is already dequantized keeps that scale (it
    only adds zeros, which the scale holds) instead of requantizing.
    """
    q_op = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dq_op = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    graph, moved = gm.graph, 0
    for pad in list(graph.nodes):
        if not _is_zero_pad(pad) or len(pad.users) != 1:
            continue
        q = next(iter(pad.users))
        if q.target is not q_op or len(q.users) != 1:
            continue
        dq = next(iter(q.users))
        if dq.target is not dq_op:
            continue
        src = pad.args[0]
        with graph.inserting_before(dq):
            if not (isinstance(src, torch.fx.Node) and src.target is dq_op):
                src = graph.call_function(dq_op, (graph.call_function(q_op, (src, *q.args[1:]), dict(q.kwargs)), *dq.args[1:]), dict(dq.kwargs))
            new_pad = graph.call_function(pad.target, (src, *pad.args[1:]), dict(pad.kwargs))
        new_pad.meta = dict(pad.meta)
        dq.replace_all_uses_with(new_pad)
        for node in (dq, q, pad):
            graph.erase_node(node)
        moved += 1
    if moved:
        graph.lint()
        gm.recompile()
    return moved


def quantize_onnx_static(
    src: str | Path, dst: str | Path, calibration: torch.Tensor, *, pre_process: bool = False, batch: int = 16
) -> None:
    """ONNX Runtime static QDQ int8: per-channel int8 weights, uint8 activations, min/max calibration.

    ``pre_process`` runs ORT's ``quant_pre_process`` first, as its docs suggest; mnv3's own export
    leaves it off because it splits HardSwish (see the module docstring). The peers' flow uses it.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one image")
    src, dst = Path(src), Path(dst)
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    if pre_process:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = dst.with_name(dst.stem + ".pre.onnx")
        quant_pre_process(str(src), str(pre))
        src = pre

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(_batches(calibration, batch))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x.contiguous().numpy()}

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs "consider pre-processing" at WARNING on every call; skipping it is deliberate
    try:
        quantize_static(
            str(src),
            str(dst),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        root.setLevel(level)
        if pre_process:
            src.unlink(missing_ok=True)


class QATModel(nn.Module):
    """A network prepared for quantization-aware training (PT2E fake-quant, XNNPACK int8 scheme).

    Train it like the float network (``train()`` / ``eval()`` switch BN and dropout in the
    exported graph); :func:`convert_qat` gives the int8 graph, :meth:`to_float` the fine-tuned
    float network (for ``save_weights``). The batch dimension stays dynamic.
    """

    def __init__(self, model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

        if not isinstance(example_inputs, tuple):
            example_inputs = (example_inputs,)
        x = example_inputs[0]
        if x.dim() != 4 or x.shape[0] < 2:
            raise ValueError(f"prepare_qat needs an example batch of shape (N >= 2, C, H, W), got {tuple(x.shape)}")
        self._float = copy.deepcopy(model).cpu().eval()
        self.spec = getattr(model, "spec", None)
        was_training = model.training
        batch = torch.export.Dim("batch")
        gm = torch.export.export(model.eval(), example_inputs, dynamic_shapes=({0: batch},)).module()
        model.train(was_training)
        self.graph = allow_exported_model_train_eval(prepare_qat_pt2e(gm, xnnpack_quantizer(qat=True)))
        self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> QATModel:
        self.training = mode
        self.graph.train(mode)
        return self

    def float_state_dict(self) -> dict[str, torch.Tensor]:
        """The fine-tuned float tensors under the original network's names (fake-quant state dropped)."""
        sd = self.graph.state_dict()
        return {k: v.detach().clone() for k, v in sd.items() if k in self._float.state_dict()}

    def to_float(self) -> nn.Module:
        """The original float network carrying the fine-tuned weights and BN statistics."""
        model = copy.deepcopy(self._float)
        missing, unexpected = model.load_state_dict(self.float_state_dict(), strict=False)
        real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if real_missing:
            raise ValueError(f"the QAT graph lost tensors {real_missing[:5]}; cannot rebuild the float network")
        return model.eval()


def prepare_qat(model: nn.Module, example_inputs: tuple[torch.Tensor, ...] | torch.Tensor) -> QATModel:
    """Wrap ``model`` for quantization-aware fine-tuning (``mnv3 train --qat``); build the optimizer after this."""
    return QATModel(model, example_inputs if isinstance(example_inputs, tuple) else (example_inputs,))


def convert_qat(qat: QATModel) -> nn.Module:
    """The int8 (quantize / dequantize) graph of a QAT-trained network, in eval mode, for export."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    graph = copy.deepcopy(qat.graph)
    graph.eval()
    converted = convert_pt2e(graph)
    share_quantization_across_pads_(converted)
    return converted


def write_qat_program(qat: nn.Module, run_dir: Path, example: torch.Tensor, log: Callable[[str], None]) -> list[Path]:
    """A QAT run's int8 network as an ExecuTorch-XNNPACK program (``model-int8.pte``), atomically; returns what it wrote.

    This is the quantization the network was trained for (its learned ranges); exporting the float
    ``model.safetensors`` with ``mnv3 export --int8`` would calibrate anew (post-training).
    """
    from mnv3.deploy.runtimes import available
    from mnv3.utils.atomic import atomic_write_bytes

    if not available("executorch"):
        log("int8 program not written: ExecuTorch is not installed (pip install 'mnv3[executorch]')")
        return []
    from mnv3.deploy.executorch_backend import lower_to_xnnpack

    program, _ = lower_to_xnnpack(convert_qat(qat.cpu()), example, None)
    atomic_write_bytes(Path(run_dir) / "model-int8.pte", program)
    size = example.shape[-1]
    log(f"int8 program (ExecuTorch-XNNPACK, {size}x{size}): {Path(run_dir) / 'model-int8.pte'}")
    return [Path(run_dir) / "model-int8.pte"]


def qat_hooks() -> Hooks:
    """The training hooks of quantization-aware training: wrap with :func:`prepare_qat`, write the int8 program."""
    return Hooks(prepare_model=prepare_qat, artifacts=write_qat_program)
