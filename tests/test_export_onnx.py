"""ONNX export of every registered variant: runs in ONNX Runtime, matches PyTorch, hard-swish kept whole.

The models get BN statistics measured on random inputs and O(1) linear layers (``randomize_(..., images=)``), so
their logits depend on the input and a wrong fold or a dropped bias would show; the graph is checked against op counts taken from the modules, and the
checker itself is shown to catch the decompositions users meet (x * relu6(x + 3) / 6, and
onnxruntime's quant_pre_process split).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mnv3
from mnv3.deploy.export import export_model
from mnv3.deploy.graph_check import check_onnx
from mnv3.deploy.prepare import ExpectedOps
from mnv3.models.registry import get_variant
from mnv3.models.testing import randomize_
from mnv3.spec.types import Family

onnx = pytest.importorskip("onnx", reason="ONNX export needs the export extra: pip install 'mnv3[export]'")
ort = pytest.importorskip("onnxruntime", reason="ONNX Runtime needs the export extra: pip install 'mnv3[export]'")

RES = 64  # every variant's total stride is <= 32; the graph does not depend on the resolution


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name", mnv3.list_models(detection=False))
def test_every_variant_exports_runs_in_ort_and_matches(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_(mnv3.create_model(name), seed=1, images=torch.randn(16, 3, RES, RES))
    out = tmp_path / f"{name}.onnx"
    report = export_model(model, out, "onnx", resolution=RES)
    assert out.is_file() and report.graph is not None and report.graph.ok, report.summary()
    # run the file ourselves, with a batch size other than the traced one (dynamic batch)
    x = torch.randn(3, 3, RES, RES)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert ref.std(0).mean() > 0.02  # logits that depend on the input (a fresh init varies by ~1e-8), so the comparison means something
    assert np.abs(got - ref).max() <= 1e-4
    # the graph, counted independently of mnv3's checker
    ops: dict[str, int] = {}
    for n in onnx.load(str(out)).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    assert ops.get("HardSwish", 0) == _count(model, nn.Hardswish)
    relu_only = get_variant(name).minimal or get_variant(name).family is Family.MNASNET  # minimalistic V3 and MnasNet-A1
    assert ops.get("HardSwish", 0) > 0 or relu_only
    assert ops.get("HardSigmoid", 0) == _count(model, nn.Hardsigmoid)
    for decomposed in ("Clip", "Div", "Sub", "Sigmoid", "BatchNormalization"):
        assert decomposed not in ops, f"{decomposed} in the graph: {ops}"


def _graph(nodes, opset=18):
    from onnx import TensorProto, helper

    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("six", TensorProto.FLOAT, [], [6.0]),
        ],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_checker_flags_a_decomposed_hardswish():
    from onnx import helper

    # x * relu6(x + 3) / 6: what opset < 14 exports and users patched by hand (pytorch/vision#3463)
    nodes = [
        helper.make_node("Add", ["x", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"]),
    ]
    expected = ExpectedOps(convs=0, hardswish=1, hardsigmoid=0, relu=0, se=0, residual_adds=0, linears=0)
    report = check_onnx(_graph(nodes), expected)
    assert not report.ok
    text = " ".join(report.problems)
    assert "decomposed" in text and "HardSwish" in text
    good = check_onnx(_graph([helper.make_node("HardSwish", ["x"], ["y"])]), expected)
    assert good.ok, good.problems
    old = check_onnx(_graph([helper.make_node("HardSwish", ["x"], ["y"])], opset=13), expected)
    assert any("opset 13" in p for p in old.problems)


def test_quant_pre_process_split_is_caught_and_mnv3_int8_keeps_hardswish(tmp_path):
    """ORT's documented pre-processing splits HardSwish; mnv3's int8 flow does not run it."""
    from mnv3.deploy.onnx_backend import check_onnx_file, export_onnx
    from mnv3.deploy.prepare import export_ready
    from mnv3.deploy.quantize import quantize_onnx_static

    model = randomize_(mnv3.create_model("mobilenetv3_small_100"), images=torch.randn(8, 3, RES, RES))
    expected = ExpectedOps.of(model)
    fp32 = tmp_path / "fp32.onnx"
    export_onnx(export_ready(model), torch.randn(1, 3, RES, RES), fp32)
    calib = torch.randn(4, 3, RES, RES)
    split = tmp_path / "pre.onnx"
    quantize_onnx_static(fp32, split, calib, pre_process=True)
    bad = check_onnx_file(split, expected)
    assert any("split" in p for p in bad.problems), bad.problems
    kept = tmp_path / "kept.onnx"
    quantize_onnx_static(fp32, kept, calib, pre_process=False)
    good = check_onnx_file(kept, expected)
    assert good.ok, good.problems
    assert good.ops.get("QuantizeLinear", 0) > 0
