"""Table 6's latency claim in miniature: the reduced tail (†) against the full one, the four SSDLite detectors in one run.

The paper (§6.3, Table 6) reports V3 137 -> V3† 119 ms and V3-Small 52 -> V3-Small† 43 ms on a Pixel 1 core (13 % and
17 % less). This times mnv3's four registered detectors, exported by mnv3's flow up to the raw head outputs, batch 1,
1 thread, interleaved in one run with the harness of ``mnv3 bench`` (docs/benchmarks.md, "Detection and segmentation").

    python bench/detector_tails.py --runtime onnxruntime executorch --resolution 320
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

import mnv3
from mnv3.deploy.bench import Contender, build_cases, measure
from mnv3.deploy.peers import timed_module
from mnv3.deploy.records import Machine

# (full tail, reduced tail) pairs of Table 6
PAIRS = (
    ("ssdlite_mobilenetv3_large_100", "ssdlite_mobilenetv3_large_100_reduced"),
    ("ssdlite_mobilenetv3_small_100", "ssdlite_mobilenetv3_small_100_reduced"),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", nargs="+", default=["onnxruntime"])
    p.add_argument("--resolution", type=int, default=320)
    p.add_argument("--num-classes", type=int, default=91, help="COCO's 90 classes + background, as Table 6")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the per-case medians here")
    a = p.parse_args()
    torch.manual_seed(0)
    names = [n for pair in PAIRS for n in pair]
    contenders = [Contender("mnv3", n, timed_module(mnv3.create_model(n, num_classes=a.num_classes).eval()), True) for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(contenders, runtimes=a.runtime, precisions=["fp32"], threads=[1], resolution=a.resolution, workdir=Path(tmp))
        records = measure(cases, warmup=10, runs=a.runs, repeats=a.repeats, chunk=10)
    m = Machine.detect()
    print(f"machine: {m.line()}")
    out: dict[str, dict[str, float]] = {}
    for runtime in a.runtime:
        med = {n: statistics.median(r.median_ms for r in records if r.model == n and r.runtime == runtime) for n in names}
        out[runtime] = med
        for full, reduced in PAIRS:
            print(f"{runtime:12s} {full:40s} {med[full]:8.2f} ms   {reduced:48s} {med[reduced]:8.2f} ms   reduced / full {med[reduced] / med[full]:.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": m.line(), "resolution": a.resolution, "median_ms": out}, indent=2))


if __name__ == "__main__":
    main()
