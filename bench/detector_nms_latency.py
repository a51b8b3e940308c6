"""Cost of decoding + NMS in the ONNX graph (``mnv3 export --nms``) against the raw file and against eager ``SSDLite.postprocess``.

Exports the trained detector WEIGHTS twice (raw outputs; with NMS), times both in ONNX Runtime interleaved (1 thread,
batch 1, median of ``--repeats`` repeats of ``--runs`` calls) and the model's PyTorch post-processing on the same
raw outputs, and prints the machine line.

    OMP_NUM_THREADS=1 python bench/detector_nms_latency.py runs/bench-dense-5ep/det-small-reduced
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", help="a trained detector (run folder or .safetensors)")
    p.add_argument("--resolution", type=int, default=320)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    from mnv3.deploy.detection import export_detector
    from mnv3.deploy.export import load_predictor
    from mnv3.deploy.records import Machine
    from mnv3.deploy.runtimes import Format
    from mnv3.weights.resolve import load_model

    torch.set_num_threads(1)
    model = load_model(args.weights).eval()
    x = torch.randn(1, 3, args.resolution, args.resolution, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        files = {"raw": Path(tmp) / "raw.onnx", "nms": Path(tmp) / "nms.onnx"}
        for key, path in files.items():
            export_detector(model, path, "onnx", resolution=args.resolution, nms=key == "nms")
        preds = {k: load_predictor(Format.ONNX, f, 1) for k, f in files.items()}
        fed = {k: pr.feed(x) for k, pr in preds.items()}
        for k, pr in preds.items():  # warm-up
            for _ in range(10):
                pr.run_outputs(fed[k])
        ms: dict[str, list[float]] = {k: [] for k in preds}
        for _ in range(args.repeats):
            for k, pr in preds.items():
                ms[k].append(_median_ms(lambda pr=pr, k=k: pr.run_outputs(fed[k]), args.runs))
    with torch.no_grad():
        raw = model(x)
    size = (args.resolution, args.resolution)
    model.postprocess(raw, [size])
    torch_ms = _median_ms(lambda: model.postprocess(raw, [size]), args.runs)
    print(f"machine: {Machine.detect().line()}")
    for k, v in ms.items():
        print(f"ONNX Runtime {k}: median {statistics.median(v):.3f} ms (repeats {', '.join(f'{m:.3f}' for m in v)})")
    print(f"SSDLite.postprocess (eager PyTorch) on the raw outputs: median {torch_ms:.3f} ms")


if __name__ == "__main__":
    main()
