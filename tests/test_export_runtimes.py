"""ExecuTorch (XNNPACK) and LiteRT exports: one delegate, hard-swish whole, logits equal to PyTorch's.

The checkers are also run on the op counts the runtimes' default flows give the same network
(hard-sigmoid decomposed; ExecuTorch copies its constants outside the delegate on every call;
LiteRT adds a MUL per gate and a TRANSPOSE for NCHW input), which is why mnv3 folds the SE gate.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn

import mnv3
from mnv3.deploy import available
from mnv3.deploy.export import export_model, load_predictor
from mnv3.deploy.prepare import ExpectedOps, export_ready, fold_se_gate_
from mnv3.models.testing import randomize_

RES = 64
needs_et = pytest.mark.skipif(not available("executorch"), reason="ExecuTorch is not installed: pip install 'mnv3[executorch]'")
needs_litert = pytest.mark.skipif(not available("litert"), reason="LiteRT is not installed: pip install 'mnv3[litert]'")


@pytest.fixture(scope="module")
def small() -> nn.Module:
    images = torch.randn(16, 3, RES, RES, generator=torch.Generator().manual_seed(3))
    return randomize_(mnv3.create_model("mobilenetv3_small_100"), images=images)


def test_se_gate_fold_is_exact(small):
    folded = export_ready(small, fold_gate=True)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Hardsigmoid)) for m in folded.modules())
    assert sum(isinstance(m, nn.ReLU6) for m in folded.modules()) == ExpectedOps.of(small).se == 9
    x = torch.randn(4, 3, RES, RES)
    with torch.no_grad():
        assert (folded(x) - small(x)).abs().max() < 1e-4
    assert fold_se_gate_(folded) == 0  # idempotent: nothing left to fold
    assert any(isinstance(m, nn.BatchNorm2d) for m in small.modules())  # the caller's model is untouched


@pytest.mark.slow
@needs_et
def test_int8_same_padding_shares_quantization(tmp_path):
    """Paper preset (TF-SAME pads) in int8: each pad moves below its quantize / dequantize pair.

    The converted graph then computes what it computed before, and the ExecuTorch program holds
    exactly the torchvision preset's quantize / dequantize ops (no float round trip per pad).
    """
    from mnv3.deploy.quantize import pt2e_ptq, share_quantization_across_pads_, xnnpack_quantizer

    torch.manual_seed(0)  # the networks' initial weights
    g = torch.Generator().manual_seed(3)
    images, calib, samples = (torch.randn(n, 3, RES, RES, generator=g) for n in (16, 8, 32))
    model = randomize_(mnv3.create_model("mobilenetv3_small_100", preset="paper"), images=images)
    q = pt2e_ptq(export_ready(model, fold_gate=True), samples[:1], calib, xnnpack_quantizer())
    with torch.no_grad():
        before = torch.cat([q(x[None]) for x in samples])
        assert share_quantization_across_pads_(q) == 5  # the stem and the four stride-2 depthwise convs
        assert share_quantization_across_pads_(q) == 0
        after = torch.cat([q(x[None]) for x in samples])
        ref = model(samples)
    err_before, err_after = (before - ref).abs().mean(), (after - ref).abs().mean()
    print(f"mean |int8 - fp32|: {err_before:.4f} before, {err_after:.4f} after; max change {(after - before).abs().max():.4f}")
    assert err_after <= 1.25 * err_before  # a pad after a dequantize keeps that scale: no worse than PT2E's own

    quant_ops = {}
    for preset in ("torchvision", "paper"):
        m = randomize_(mnv3.create_model("mobilenetv3_small_100", preset=preset), images=images)
        report = export_model(m, tmp_path / f"{preset}.pte", "executorch", resolution=RES, int8=True, calibration=calib, samples=samples)
        gr = report.graph
        assert gr is not None and gr.ok and gr.partitions == 1, report.summary()
        assert report.parity is not None and report.parity.top1_agreement >= 0.5, report.summary()  # measured 65-85 %; a broken graph gives 10-30 %
        quant_ops[preset] = {k: v for k, v in gr.ops.items() if "quantize" in k}
    assert gr.ops["aten_constant_pad_nd_default"] == 5
    assert quant_ops["paper"] == quant_ops["torchvision"]


@needs_et
def test_executorch_export_one_delegate_matches(small, tmp_path):
    out = tmp_path / "small.pte"
    report = export_model(small, out, "executorch", resolution=RES)
    g = report.graph
    assert g is not None and g.ok and g.partitions == 1, report.summary()
    assert g.ops["aten_hardswish_default"] == 19 and "aten_div_tensor" not in g.ops
    p = load_predictor("executorch", out, threads=1)
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        assert np.abs(p(x) - small(x).numpy()).max() <= 1e-4
    # a program loaded from bytes keeps its buffer alive (the runtime reads it in place)
    from mnv3.deploy.executorch_backend import ExecuTorchPredictor

    from_bytes = ExecuTorchPredictor(out.read_bytes(), threads=1)
    gc.collect()
    assert np.array_equal(from_bytes(x), p(x))


@pytest.mark.slow
@needs_litert
def test_litert_export_nhwc_one_delegate_matches(small, tmp_path):
    out = tmp_path / "small.tflite"
    report = export_model(small, out, "litert", resolution=RES)
    g = report.graph
    assert g is not None and g.ok and g.partitions == 1, report.summary()
    assert g.ops["HARD_SWISH"] == 19 and "TRANSPOSE" not in g.ops
    p = load_predictor("litert", out, threads=1)
    assert p.input_shape == (1, RES, RES, 3)  # channels-last input, as TFLite kernels want
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        assert np.abs(p(x) - small(x).numpy()).max() <= 1e-4


def test_checkers_flag_what_the_default_flows_produce(small):
    """Op counts as the runtimes' default exports of Small give them (measured with executorch 1.5.1 / litert-torch 0.10)."""
    from mnv3.deploy.graph_check import check_executorch, check_litert

    exp = ExpectedOps.of(small)
    ok_delegated = {"aten_convolution_default": 52, "aten_hardswish_default": 19, "aten_mul_tensor": 9, "aten_add_tensor": 6}
    assert check_executorch(ok_delegated, {"getitem": 1}, 1, exp).ok
    # hard-sigmoid as add / clamp / div, its scalar constants copied outside the delegate on every call
    decomposed = {**ok_delegated, "aten_add_tensor": 6 + 9, "aten_clamp_default": 18, "aten_div_tensor": 9}
    report = check_executorch(decomposed, {"getitem": 1, "dim_order_ops__to_dim_order_copy_default": 18}, 1, exp)
    text = " ".join(report.problems)
    assert "outside the XNNPACK delegate" in text and "aten_div_tensor" in text and "residual" in text
    assert "partitions" in " ".join(check_executorch(ok_delegated, {}, 3, exp).problems)
    ok_tflite = ["CONV_2D"] * 41 + ["DEPTHWISE_CONV_2D"] * 11 + ["HARD_SWISH"] * 19 + ["MUL"] * 9 + ["ADD"] * 6 + ["DELEGATE"]
    assert check_litert(ok_tflite, exp).ok
    # NCHW input (TRANSPOSE) and a MUL by 1/6 per gate: litert-torch's default lowering
    default = check_litert(ok_tflite + ["TRANSPOSE"] + ["MUL"] * 9, exp)
    assert not default.ok and any("MUL" in p for p in default.problems)
    # a clamp(0, 1) gate becomes RELU_0_TO_1, which XNNPACK does not take: ten partitions
    split = check_litert(ok_tflite + ["RELU_0_TO_1"] * 9 + ["DELEGATE"] * 9, exp)
    assert split.partitions == 10 and len(split.problems) == 2
