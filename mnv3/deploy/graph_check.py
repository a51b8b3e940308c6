"""Checks of an exported graph: BN folded, hard-swish whole, nothing decomposed, one delegate.

The anchors' users lose most of MobileNetV3's speed to graphs in which hard-swish became
``x * relu6(x + 3) / 6`` (pytorch/vision#3463, executorch#12360, onnxruntime#31957) or that
fall out of the XNNPACK delegate. Each check compares the graph's op counts with what the
network's modules say it must contain (:class:`~mnv3.deploy.prepare.ExpectedOps`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mnv3.deploy.prepare import ExpectedOps


@dataclass
class GraphReport:
    """Op histogram of an exported graph and the problems found in it (empty when the graph is right)."""

    format: str
    ops: dict[str, int]
    problems: list[str] = field(default_factory=list)
    partitions: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line per fact, for the CLI."""
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1]))
        lines = [f"graph ({self.format}): {ops}"]
        if self.partitions is not None:
            lines.append(f"XNNPACK partitions: {self.partitions}")
        lines += [f"graph problem: {p}" for p in self.problems] or [
            "graph check: BN folded, hard-swish native, nothing decomposed"
        ]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """ValueError listing every problem (the exported file is then not kept)."""
        if self.problems:
            raise ValueError(f"the exported {self.format} graph failed its check: " + "; ".join(self.problems))


def _count_check(problems: list[str], ops: Mapping[str, int], op: str, want: int, what: str) -> None:
    got = ops.get(op, 0)
    if got != want:
        problems.append(f"expected {want} {op} op(s) ({what}), found {got}")


def _forbid(problems: list[str], ops: Mapping[str, int], names: Iterable[str], why: str) -> None:
    bad = {n: ops[n] for n in names if ops.get(n, 0)}
    if bad:
        problems.append(f"{why}: {bad}")


_ADDS = "the residual connections and LR-ASPP's skip sum"
_MULS = "the SE scalings and LR-ASPP's gate"

ONNX_DECOMPOSED = ("Clip", "Div", "Sub", "Sigmoid", "Relu6")


def check_onnx(model_proto, expected: ExpectedOps) -> GraphReport:
    """ONNX graph: no BatchNormalization; one HardSwish (opset >= 14) per h-swish layer, one HardSigmoid per SE, one Clip per ReLU6."""
    ops = dict(Counter(n.op_type for n in model_proto.graph.node))
    problems: list[str] = []
    opset = max((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 14:
        problems.append(f"opset {opset} has no HardSwish op; export with opset >= 14")
    _forbid(problems, ops, ["BatchNormalization"], "BatchNorm not folded")
    # a ReLU6 layer exports as Clip: where the network has them (SSDLite's head), Clip counts them instead of being forbidden
    allowed = {n for n, present in (("Clip", expected.relu6), ("Sigmoid", expected.sigmoids)) if present}
    _forbid(problems, ops, [n for n in ONNX_DECOMPOSED if n not in allowed], "decomposed hard-swish / hard-sigmoid arithmetic")
    if ops.get("Clip", 0) > expected.relu6 > 0:  # fewer is ORT's int8 quantizer folding a ReLU6 into its conv's output range
        problems.append(
            f"expected at most {expected.relu6} Clip op(s) (the ReLU6 layers of the detection head), found {ops['Clip']}"
        )
    if expected.sigmoids:
        _count_check(problems, ops, "Sigmoid", expected.sigmoids, "the LR-ASPP gate")
    if ops.get("HardSigmoid", 0) > expected.hardsigmoid and ops.get("HardSwish", 0) < expected.hardswish:
        problems.append(
            "HardSwish split into HardSigmoid + Mul (onnxruntime's quant_pre_process does this); keep HardSwish whole"
        )
    _count_check(problems, ops, "HardSwish", expected.hardswish, "the network's h-swish layers")
    _count_check(problems, ops, "HardSigmoid", expected.hardsigmoid, "the SE gates")
    _count_check(problems, ops, "Add", expected.residual_adds + expected.head_adds, _ADDS)
    _count_check(problems, ops, "Mul", expected.se + expected.head_muls, _MULS)
    return GraphReport("onnx", ops, problems)


def check_executorch(
    delegated: Mapping[str, int], outside: Mapping[str, int], partitions: int, expected: ExpectedOps
) -> GraphReport:
    """ExecuTorch program: everything in one XNNPACK delegate, hard-swish whole, no division left.

    ``delegated`` / ``outside`` are op counts inside / outside the delegate (ExecuTorch's
    ``get_delegation_info``); the SE gates must have been folded (:func:`fold_se_gate_`).
    """
    ops = {k: v for k, v in delegated.items() if k != "Total"}
    problems: list[str] = []
    left = {k: v for k, v in outside.items() if k not in ("getitem", "Total") and v}
    if left:
        problems.append(f"ops outside the XNNPACK delegate (run by slow portable kernels): {left}")
    if partitions != 1:
        problems.append(f"{partitions} XNNPACK partitions (want 1)")
    _count_check(problems, ops, "aten_hardswish_default", expected.hardswish, "the network's h-swish layers")
    forbidden = ["aten_div_tensor", "aten__native_batch_norm_legit_no_training_default"]
    _forbid(problems, ops, forbidden + ["aten_sigmoid_default"] * (not expected.sigmoids), "decomposed or unfolded ops")
    if expected.sigmoids:
        _count_check(problems, ops, "aten_sigmoid_default", expected.sigmoids, "the LR-ASPP gate")
    _count_check(problems, ops, "aten_add_tensor", expected.residual_adds + expected.head_adds, _ADDS)
    _count_check(problems, ops, "aten_mul_tensor", expected.se + expected.head_muls, _MULS)
    return GraphReport("executorch", ops, problems, partitions)


LITERT_DECOMPOSED = ("DIV", "LOGISTIC", "SUB", "MINIMUM", "MAXIMUM", "RELU_0_TO_1", "RELU6")


def check_litert(ops_list: Iterable[str], expected: ExpectedOps) -> GraphReport:
    """TFLite flatbuffer: HARD_SWISH per h-swish layer, no clamp / divide chains, one XNNPACK delegate."""
    counts = Counter(ops_list)
    partitions = counts.pop("DELEGATE", 0)
    ops = dict(counts)
    problems: list[str] = []
    if not 1 <= partitions <= expected.litert_partitions:
        want = "1" if expected.litert_partitions == 1 else f"1 to {expected.litert_partitions}"
        problems.append(f"{partitions} XNNPACK partitions (want {want})")
    _count_check(problems, ops, "HARD_SWISH", expected.hardswish, "the network's h-swish layers")
    _forbid(
        problems,
        ops,
        [n for n in LITERT_DECOMPOSED if n != "LOGISTIC" or not expected.sigmoids],
        "decomposed hard-swish / hard-sigmoid arithmetic",
    )
    if expected.sigmoids:
        _count_check(problems, ops, "LOGISTIC", expected.sigmoids, "the LR-ASPP gate")
    _count_check(problems, ops, "ADD", expected.residual_adds + expected.head_adds, _ADDS)
    _count_check(problems, ops, "MUL", expected.se + expected.head_muls, _MULS)
    return GraphReport("litert", ops, problems, partitions)
