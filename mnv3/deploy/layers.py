"""Per-layer latency of an exported network in ONNX Runtime (its built-in profiler), as a table and a plot.

ORT reports each executed kernel with the name of the (possibly fused) node or of its output
value; the dynamo exporter records for every ONNX node the PyTorch module it came from
(``pkg.torch.onnx.name_scopes``), so each kernel maps back to a row of the paper's Tables 1-2:
``stem``, ``blocks.i``, ``head_conv``, ``head``. Layout reorders ORT inserts are charged to the
layer of the kernel before them.
"""

from __future__ import annotations

import ast
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class LayerTime:
    """One layer's median time per inference and its share of the summed kernel time."""

    layer: str
    ops: int
    median_us: float
    share: float


def _layer_of(scopes: list[str]) -> str:
    """The Table 1-2 row of a module path: stem, blocks.i, head_conv; anything after them is the head."""
    top = scopes[1] if len(scopes) > 1 and scopes[0] == "" else (scopes[0] if scopes else "")
    if top in ("stem", "head_conv") or top.startswith("blocks."):
        return top
    return "head"


def _scope_maps(onnx_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(ONNX node name -> layer, output value name -> layer)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    by_node, by_value = {}, {}
    for n in model.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        raw = meta.get("pkg.torch.onnx.name_scopes")
        if raw is None:
            continue
        try:
            layer = _layer_of(list(ast.literal_eval(raw)))
        except (ValueError, SyntaxError):
            continue
        by_node[n.name] = layer
        for o in n.output:
            by_value[o] = layer
    return by_node, by_value


def _resolve(name: str, by_node: dict[str, str], by_value: dict[str, str]) -> str | None:
    base = name[: -len("_kernel_time")] if name.endswith("_kernel_time") else name
    for cand in (base, base.removesuffix("_nchwc"), base.split("_token_")[0]):
        if cand in by_node:
            return by_node[cand]
        if cand in by_value:
            return by_value[cand]
    return None


def layer_breakdown(
    onnx_path: str | Path, example: torch.Tensor, threads: int = 1, runs: int = 20, warmup: int = 5
) -> list[LayerTime]:
    """Run ``runs`` profiled inferences of an mnv3 ONNX export and attribute every kernel to its layer."""
    from mnv3.deploy.onnx_backend import OrtPredictor

    onnx_path = Path(onnx_path)
    by_node, by_value = _scope_maps(onnx_path)
    if not by_node:
        raise ValueError(f"{onnx_path} carries no module names (export it with mnv3 export / torch.onnx dynamo exporter)")
    prefix = str(onnx_path.with_name(onnx_path.stem + "-ortprofile"))
    p = OrtPredictor(onnx_path, threads, profile_prefix=prefix)
    fed = p.feed(example)
    for _ in range(warmup + runs):
        p.run(fed)
    trace = Path(p.session.end_profiling())
    try:
        events = json.loads(trace.read_text())
    finally:
        trace.unlink(missing_ok=True)
    # each inference is a "model_run" session event; kernels belong to the run whose span holds them
    spans = sorted(
        (int(e["ts"]), int(e["ts"]) + int(e["dur"])) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    per_run: list[dict[str, float]] = [{} for _ in spans]
    ops: dict[str, int] = {}
    last_layer = "other"
    nodes = sorted(
        (e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")),
        key=lambda e: int(e["ts"]),
    )
    j = 0
    for e in nodes:
        ts = int(e["ts"])
        while j < len(spans) and ts > spans[j][1]:
            j += 1
        if j == len(spans):
            break
        layer = _resolve(e["name"], by_node, by_value) or last_layer
        last_layer = layer
        per_run[j][layer] = per_run[j].get(layer, 0.0) + float(e.get("dur", 0))
        if j == len(spans) - 1:
            ops[layer] = ops.get(layer, 0) + 1
    runs_data = per_run[warmup:] or per_run
    layers = list(dict.fromkeys(k for r in runs_data for k in r))
    med = {k: statistics.median(r.get(k, 0.0) for r in runs_data) for k in layers}
    total = sum(med.values()) or 1.0
    return [LayerTime(k, ops.get(k, 0), med[k], med[k] / total) for k in _ordered(layers)]


def _ordered(layers: list[str]) -> list[str]:
    def key(name: str) -> tuple[int, int]:
        if name == "stem":
            return (0, 0)
        if name.startswith("blocks."):
            return (1, int(name.split(".")[1]))
        return {"head_conv": (2, 0), "head": (3, 0)}.get(name, (4, 0))

    return sorted(layers, key=key)


def format_layers(rows: list[LayerTime], whole_ms: float | None = None) -> str:
    """Plain-text table; ``whole_ms`` (the model's measured median) adds the unattributed remainder."""
    lines = [f"{'layer':<12} {'kernels':>7} {'median us':>10} {'share':>7}", "-" * 39]
    lines += [f"{r.layer:<12} {r.ops:>7} {r.median_us:>10.1f} {100 * r.share:>6.1f}%" for r in rows]
    total = sum(r.median_us for r in rows)
    lines.append(f"{'sum':<12} {sum(r.ops for r in rows):>7} {total:>10.1f}")
    if whole_ms is not None:
        lines.append(
            f"whole-model median {whole_ms * 1000:.1f} us; outside kernels (session overhead) {whole_ms * 1000 - total:.1f} us"
        )
    return "\n".join(lines)


def plot_layers(rows: list[LayerTime], path: str | Path, title: str) -> Path:
    """Horizontal bar chart of per-layer time, written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mnv3.utils.atomic import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.5))
    names = [r.layer for r in rows][::-1]
    ax.barh(names, [r.median_us for r in rows][::-1], color="#4C72B0")
    ax.set_xlabel("median time per inference (us)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
