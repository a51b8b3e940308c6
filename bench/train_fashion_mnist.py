"""Benchmark (not CI): MobileNetV3-Small, MobileNetV3-Large and torchvision's MobileNetV2 trained by
the same loop, recipe and budget on Fashion-MNIST; accuracy against latency like the paper's Figure 1.

    .venv/bin/python bench/train_fashion_mnist.py --epochs 4 --threads 1 --output runs/bench-fmnist

Each network trains with ``mnv3 train``'s engine (the fashion-mnist recipe, overridden only by
--epochs / --threads). Then, in one process and interleaved round by round so that machine noise
hits all three alike: batch-1 latency (ONNX Runtime and PyTorch eager, fp32, 1 thread) and training throughput (img/s,
forward + backward + step at the recipe's batch). Results go to <output>/results.json, the plot to
docs/fashion_mnist_accuracy_latency.png and a markdown table to <output>/results.md. A finished
model is not retrained when the script is run again (delete its folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnv3.models.registry import create_model
from mnv3.train.config import load_recipe
from mnv3.train.engine import train

MODELS = {
    "mobilenetv3_small_100": "MobileNetV3-Small 1.0 (mnv3)",
    "mobilenetv3_large_100": "MobileNetV3-Large 1.0 (mnv3)",
    "torchvision_mobilenet_v2": "MobileNetV2 1.0 (torchvision)",
}
PEER = "torchvision_mobilenet_v2"


def build(name: str, in_chans: int) -> nn.Module:
    """A freshly initialised network for 10 classes and ``in_chans`` input channels."""
    if name == PEER:
        m = torchvision.models.mobilenet_v2(num_classes=10)
        if in_chans != 3:  # same first layer, one input channel (Fashion-MNIST is grayscale)
            m.features[0][0] = nn.Conv2d(in_chans, 32, 3, 2, 1, bias=False)
        return m
    return create_model(name, num_classes=10, in_chans=in_chans)


def madds(model: nn.Module, in_chans: int, res: int) -> int:
    """Conv + linear multiply-adds at batch 1 (FlopCounterMode counts 2 FLOPs per MAC), as the paper counts."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_chans, res, res))
    return int(counter.get_total_flops() // 2)


def latency_ms(models: dict[str, nn.Module], in_chans: int, res: int, rounds: int, calls: int) -> dict[str, dict]:
    """Batch-1 eval-mode latency, interleaved: each round times ``calls`` calls of every model in turn."""
    x = torch.randn(1, in_chans, res, res)
    per: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():
            m.eval()
            for _ in range(10):
                m(x)
        for _ in range(rounds):
            for k, m in models.items():
                for _ in range(calls):
                    t = time.perf_counter()
                    m(x)
                    per[k].append((time.perf_counter() - t) * 1e3)
    return {k: {"median": statistics.median(v), "p10": sorted(v)[len(v) // 10], "p90": sorted(v)[9 * len(v) // 10]} for k, v in per.items()}


def latency_ort_ms(models: dict[str, nn.Module], in_chans: int, res: int, rounds: int, calls: int, folder: Path) -> dict[str, dict]:
    """Batch-1 latency in ONNX Runtime (1 thread, all graph optimisations), the graph-runtime view closest to
    the paper's TFLite measurements; exported and loaded with mnv3.deploy's ONNX backend, interleaved like above."""
    from mnv3.deploy.onnx_backend import OrtPredictor, export_onnx

    x = torch.randn(1, in_chans, res, res)
    sessions = {}
    for k, m in models.items():
        path = folder / f"{k}-{res}.onnx"
        export_onnx(m.eval(), x, path)
        sessions[k] = OrtPredictor(path, threads=1)
    fed = {k: s.feed(x) for k, s in sessions.items()}
    per: dict[str, list[float]] = {k: [] for k in models}
    for k, s in sessions.items():
        for _ in range(10):
            s.run(fed[k])
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(calls):
                t = time.perf_counter()
                s.run(fed[k])
                per[k].append((time.perf_counter() - t) * 1e3)
    return {k: {"median": statistics.median(v), "p10": sorted(v)[len(v) // 10], "p90": sorted(v)[9 * len(v) // 10]} for k, v in per.items()}


def train_throughput(models: dict[str, nn.Module], in_chans: int, res: int, batch: int, rounds: int) -> dict[str, float]:
    """Images/s of one training step (channels_last, SGD), interleaved round by round; median per model."""
    x = torch.randn(batch, in_chans, res, res).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    per: dict[str, list[float]] = {k: [] for k in models}
    opts = {}
    for k, m in models.items():
        m.train().to(memory_format=torch.channels_last)
        opts[k] = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    for r in range(rounds + 1):
        for k, m in models.items():
            t = time.perf_counter()
            loss = F.cross_entropy(m(x), y)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if r > 0:  # round 0 warms up
                per[k].append(batch / (time.perf_counter() - t))
    return {k: statistics.median(v) for k, v in per.items()}


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, torchvision {torchvision.__version__}, Python {platform.python_version()}"


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    res = results["resolution"]
    for ax, key_lat, what in ((axes[0], "ort_latency_ms", "ONNX Runtime"), (axes[1], "latency_ms", "PyTorch eager")):
        for key, r in results["models"].items():
            v3 = key != PEER
            x, y = r[key_lat]["median"], 100 * r["top1"]
            ax.plot(x, y, "o" if v3 else "s", ms=9, color="tab:red" if v3 else "tab:blue")
            ax.annotate(f"{MODELS[key]}\n{r['madds'] / 1e6:.1f}M MAdds, {r['params'] / 1e6:.2f}M params", (x, y),
                        textcoords="offset points", xytext=(8, -4), fontsize=8)
        ax.set(xlabel=f"{what} latency, batch 1, 1 CPU thread, {res}x{res} (ms)", ylabel="Fashion-MNIST test top-1 (%)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.7, y=0.3)
        ax.set_xlim(left=0)
    fig.suptitle(f"Fashion-MNIST, {results['epochs']:g} epochs, same recipe and training loop (cf. paper Figure 1)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    peer = results["models"][PEER]
    rows = [
        "| model | test top-1 | top-5 | params | MAdds | ORT latency (ms) | eager latency (ms) | ORT / eager at 224 px (ms) | train img/s (interleaved) | vs MobileNetV2 | img/s during its run | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results["models"].items():
        lat, ort = r["latency_ms"], r["ort_latency_ms"]
        rows.append(
            f"| {MODELS[key]} | {100 * r['top1']:.2f} % | {100 * r['top5']:.2f} % | {r['params'] / 1e6:.2f} M | {r['madds'] / 1e6:.1f} M | "
            f"{ort['median']:.2f} [{ort['p10']:.2f}-{ort['p90']:.2f}] | {lat['median']:.2f} [{lat['p10']:.2f}-{lat['p90']:.2f}] | "
            f"{r['ort_latency_224_ms']['median']:.2f} / {r['latency_224_ms']['median']:.2f} | {r['train_img_s']:.0f} | "
            f"{r['train_img_s'] / peer['train_img_s']:.2f}x | {r['run_img_s']:.0f} | {r['wall_s'] / 60:.1f} min |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared machine from thrashing)")
    ap.add_argument("--output", default="runs/bench-fmnist")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--latency-rounds", type=int, default=15)
    ap.add_argument("--throughput-rounds", type=int, default=7)
    ap.add_argument("--plot", default="docs/fashion_mnist_accuracy_latency.png")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot and table from <output>/results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.output)
    if args.replot:
        results = json.loads((out / "results.json").read_text())
        plot(results, Path(args.plot))
        print(markdown(results))
        return
    out.mkdir(parents=True, exist_ok=True)
    names = args.models.split(",")
    base = load_recipe("fashion-mnist", {"epochs": args.epochs, "threads": args.threads, "output": str(out), "progress": False, "tensorboard": False})
    in_chans, res = (1 if base.grayscale in (None, True) else 3), base.resolution
    results: dict = {"machine": machine_line(), "epochs": args.epochs, "threads": args.threads, "resolution": res, "recipe": base.to_dict(), "models": {}}
    for name in names:
        done = out / name / "final_metrics.json"
        summary = out / name / "bench.json"
        if not (done.is_file() and summary.is_file()):
            cfg = load_recipe("fashion-mnist", {**base.to_dict(), "name": name, "model": name})
            torch.manual_seed(cfg.seed)
            t0 = time.time()
            r = train(cfg, model=build(name, in_chans) if name == PEER else None)
            summary.write_text(json.dumps({"wall_s": r.wall_s, "run_img_s": r.train_images_per_s, "started": t0, "load_after": os.getloadavg()}))
        final = json.loads(done.read_text())
        s = json.loads(summary.read_text())
        results["models"][name] = {"top1": final["top1"], "top5": final["top5"], "wall_s": s["wall_s"], "run_img_s": s["run_img_s"], "load_after": s["load_after"]}
        print(f"{name}: top-1 {100 * final['top1']:.2f} % in {s['wall_s'] / 60:.1f} min", flush=True)
    nets = {n: build(n, in_chans) for n in names}
    for n, m in nets.items():
        results["models"][n]["params"] = sum(p.numel() for p in m.parameters())
        results["models"][n]["madds"] = madds(m, in_chans, res)
    lat = latency_ms(nets, in_chans, res, args.latency_rounds, 20)
    lat224 = latency_ms(nets, in_chans, 224, max(3, args.latency_rounds // 3), 10)
    ort_lat = latency_ort_ms(nets, in_chans, res, args.latency_rounds, 50, out)
    ort_lat224 = latency_ort_ms(nets, in_chans, 224, max(3, args.latency_rounds // 3), 20, out)
    tput = train_throughput(nets, in_chans, res, base.batch_size, args.throughput_rounds)
    for n in names:
        results["models"][n].update(
            {"latency_ms": lat[n], "latency_224_ms": lat224[n], "ort_latency_ms": ort_lat[n], "ort_latency_224_ms": ort_lat224[n], "train_img_s": tput[n]}
        )
    results["load_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if PEER in names:
        (out / "results.md").write_text(markdown(results))
        print(markdown(results))
        plot(results, Path(args.plot))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
