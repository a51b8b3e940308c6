"""Measured latency of searched networks against V3's width multipliers, interleaved in one run (docs/benchmarks.md, "Search").

Each network is exported by mnv3's flow (BN folded) to ONNX Runtime, 1 thread, batch 1, at the search resolution, and
timed in interleaved chunks so that every network sees the same machine state. Networks are registered names with an
optional width (``mobilenetv3_small_100@0.75``) or spec files (a NetAdapt ``spec.yaml``, a NAS ``best_spec.yaml``).

    python bench/search_latency.py mobilenetv3_small_100@0.75 mobilenetv3_small_100 runs/adapted/spec.yaml --resolution 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from mnv3.deploy.bench import Contender, build_cases, measure
from mnv3.deploy.records import Machine
from mnv3.models.registry import build_network, create_model, is_spec_file, resolve_spec


def network(text: str, num_classes: int, in_chans: int) -> tuple[str, torch.nn.Module]:
    """A registered name (``NAME@WIDTH`` for a width multiplier) or a spec file, with the data's classes and channels."""
    if is_spec_file(text):
        spec = resolve_spec(text, num_classes).replace(in_chans=in_chans)
        return spec.name, build_network(spec)
    name, _, width = text.partition("@")
    kw = {"width": float(width)} if width else {}
    return text, create_model(name, num_classes=num_classes, in_chans=in_chans, **kw)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("networks", nargs="+")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the per-network medians here")
    a = p.parse_args()
    torch.manual_seed(0)
    contenders = [Contender("mnv3", n, m.eval(), True) for n, m in (network(t, a.num_classes, a.in_chans) for t in a.networks)]
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(contenders, runtimes=["onnxruntime"], precisions=["fp32"], threads=[1], resolution=a.resolution, workdir=Path(tmp))
        records = measure(cases, warmup=50, runs=a.runs, repeats=a.repeats, chunk=20)
    m = Machine.detect()
    print(f"machine: {m.line()}")
    out = {}
    for c in contenders:
        meds = [r.median_ms for r in records if r.model == c.name]
        out[c.name] = {"median_ms": statistics.median(meds), "repeat_medians_ms": meds, "params": sum(p.numel() for p in c.model.parameters())}
        print(f"{c.name:50s} {out[c.name]['median_ms']:.4f} ms  (repeats {', '.join(f'{x:.4f}' for x in meds)})  params {out[c.name]['params']:,}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": m.line(), "resolution": a.resolution, "networks": out}, indent=2))


if __name__ == "__main__":
    main()
