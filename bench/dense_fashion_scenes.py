"""The dense tasks' accuracy claims in miniature on Fashion scenes (paper §6.3 Table 6, §6.4 Table 7), one loop, one budget.

Detection: the four Table 6 SSDLite detectors (V3, V3†, V3-Small, V3-Small†, ``paper`` preset) and torchvision's
``ssdlite320_mobilenet_v3_large`` (``ssdlite_mobilenetv3_large_100`` under ``preset=torchvision``: the same network and
its own loss), each trained by ``mnv3 train --task detection`` with the default recipe (fashion-scenes.yaml) and the
same ``--epochs``. Segmentation: LR-ASPP and R-ASPP (F = 256) on Large and Small (RF2, OS 16) and torchvision's
``lraspp_mobilenet_v3_large`` (``lraspp_mobilenetv3_large_100_full`` under ``preset=torchvision``), with the default
recipe (fashion-scenes-lraspp.yaml). Every run: seed 0 (`--seed`), one intra-op thread, data loading in the training process,
``--jobs`` runs at a time, the default 8,000 / 1,000-scene set (seed 0).

``report`` then gathers, for every finished run: test accuracy (COCO mAP@[.5:.95] and mAP@.5 by pycocotools; mIoU),
params and MAdds at 320 with the run's classes, ONNX Runtime fp32 latency of all runs of a task interleaved in one
run (1 thread, batch 1, 320x320; a detector up to its raw outputs, as exported), and for the runs named by ``--int8``
the accuracy of the post-training int8 file (``mnv3 export --int8`` with 128 Fashion scenes training images,
scored on the test split by ``mnv3 eval --artifact``) in ONNX Runtime and ExecuTorch.

    python bench/dense_fashion_scenes.py train --out runs/bench-dense --epochs 1 --jobs 2
    python bench/dense_fashion_scenes.py report --out runs/bench-dense --int8 det-small-reduced seg-lraspp-small \\
        --json bench/results/dense_fashion_scenes.json

``train --runs KEY ...`` trains a subset; ``--device cuda --workers N`` runs on a GPU (``--eval-interval`` spares the
per-epoch test passes). ``report --arch-from DIR`` reports runs whose weights stayed on another machine: params, MAdds
and latency come from the same network trained in DIR (checked against the run's config), accuracy from the run itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained network of the benchmark: its run folder name, task, registered model, preset and table label."""

    key: str
    task: str
    model: str
    preset: str
    label: str


RUNS = (
    Run("det-tv-large", "detection", "ssdlite_mobilenetv3_large_100", "torchvision", "torchvision ssdlite320 (V3-Large)"),
    Run("det-large", "detection", "ssdlite_mobilenetv3_large_100", "paper", "V3"),
    Run("det-large-reduced", "detection", "ssdlite_mobilenetv3_large_100_reduced", "paper", "V3†"),
    Run("det-small", "detection", "ssdlite_mobilenetv3_small_100", "paper", "V3-Small"),
    Run("det-small-reduced", "detection", "ssdlite_mobilenetv3_small_100_reduced", "paper", "V3-Small†"),
    Run("seg-tv-lraspp-large", "segmentation", "lraspp_mobilenetv3_large_100_full", "torchvision", "torchvision lraspp (V3-Large)"),
    Run("seg-raspp-large", "segmentation", "raspp_mobilenetv3_large_100", "paper", "V3 + RF2 + R-ASPP (F 256)"),
    Run("seg-lraspp-large", "segmentation", "lraspp_mobilenetv3_large_100", "paper", "V3 + RF2 + LR-ASPP"),
    Run("seg-raspp-small", "segmentation", "raspp_mobilenetv3_small_100", "paper", "V3-Small + RF2 + R-ASPP (F 256)"),
    Run("seg-lraspp-small", "segmentation", "lraspp_mobilenetv3_small_100", "paper", "V3-Small + RF2 + LR-ASPP"),
)
BY_KEY = {r.key: r for r in RUNS}
RESOLUTION = 320


def _train_one(
    run: Run, out: Path, epochs: float, device: str = "cpu", workers: int = 0, eval_interval: int = 1, seed: int = 0
) -> str:
    """``mnv3 train`` for one run (resumed exactly when its folder holds an unfinished run); returns a status line."""
    folder = out / run.key
    if (folder / "model.safetensors").is_file() and (folder / "final_metrics.json").is_file():
        return f"{run.key}: done before"
    cmd = [sys.executable, "-m", "mnv3.cli.main", "train"]
    if (folder / "last.pt").is_file():
        cmd += ["--resume", str(folder)]
    else:
        cmd += ["--task", run.task, "--model", run.model, "--preset", run.preset, "--epochs", str(epochs), "--seed", str(seed),
                "--workers", str(workers), "--device", device, "--set", f"eval_interval={eval_interval}",
                "--out-dir", str(out), "--name", run.key]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out / f"{run.key}.log", "a") as log:
        rc = subprocess.run([*cmd, "--no-progress"], env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    return f"{run.key}: exit {rc}"


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [BY_KEY[k] for k in args.runs] if args.runs else list(RUNS)
    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process; the pool only bounds how many at once
        for line in pool.map(functools.partial(_train_one, out=out, epochs=args.epochs, device=args.device, workers=args.workers,
                                                     eval_interval=args.eval_interval, seed=args.seed), runs):
            print(line, flush=True)


def _accuracy(run: Run, metrics: dict) -> dict[str, float]:
    if run.task == "detection":
        return {"mAP": 100 * metrics["coco"]["mAP"], "mAP50": 100 * metrics["coco"]["mAP50"]}
    return {"mIoU": 100 * metrics["mIoU"], "pixel_accuracy": 100 * metrics["pixel_accuracy"]}


def _int8(run: Run, folder: Path, model: torch.nn.Module, formats: list[str], workdir: Path) -> dict[str, dict[str, float]]:
    """Post-training int8 files of a trained run, each scored on the test split in its runtime (``mnv3 eval --artifact``)."""
    from mnv3.deploy.calibration import FASHION_SCENES, calibration_images
    from mnv3.deploy.detection import export_detector
    from mnv3.deploy.exported import ExportedModel
    from mnv3.deploy.runtimes import FILE_SUFFIX, Format
    from mnv3.deploy.segmentation import export_segmenter
    from mnv3.train.eval_job import run_eval

    pp = dataclasses.replace(model.weights_meta.preprocessing, resize=RESOLUTION)
    calib = calibration_images(FASHION_SCENES, pp, 3, 128)  # the training images (mnv3.deploy.calibration)
    export = export_detector if run.task == "detection" else export_segmenter
    out: dict[str, dict[str, float]] = {}
    for fmt in formats:
        path = workdir / f"{run.key}.int8{FILE_SUFFIX[Format(fmt)]}"
        export(model.eval(), path, fmt, resolution=RESOLUTION, int8=True, calibration=calib)
        result, _ = run_eval(folder, runner=functools.partial(ExportedModel, path, threads=1), runner_name=str(path),
                             out_dir=workdir / run.key)  # fmt: skip
        out[fmt] = _accuracy(run, result.to_dict())
        print(f"  {run.key} int8 {fmt}: {out[fmt]}", flush=True)
    return out


def _config(folder: Path) -> dict:
    import yaml

    return yaml.safe_load((folder / "config.yaml").read_text())


def report(args: argparse.Namespace) -> None:
    import mnv3  # noqa: F401  (registers the networks)
    from mnv3.analysis.profiler import profile_model
    from mnv3.deploy.bench import Contender, build_cases, measure
    from mnv3.deploy.peers import timed_module
    from mnv3.deploy.records import Machine
    from mnv3.weights.resolve import load_model

    torch.set_num_threads(1)
    out = Path(args.out)
    rows: dict[str, dict] = {}
    models = {}
    for run in RUNS:
        folder = out / run.key
        if not (folder / "final_metrics.json").is_file():
            print(f"{run.key}: not trained yet ({folder})", file=sys.stderr)
            continue
        if (folder / "model.safetensors").is_file():
            model = load_model(str(folder)).eval()
        elif args.arch_from and (Path(args.arch_from) / run.key / "model.safetensors").is_file():
            # trained elsewhere (a GPU) with its weights left there: params, MAdds and latency depend only on the
            # network, so they come from a run of the same network and preset here (--arch-from)
            same = _config(Path(args.arch_from) / run.key)
            if any(same.get(k) != _config(folder).get(k) for k in ("model", "preset", "model_overrides", "width")):
                raise SystemExit(f"{args.arch_from}/{run.key} is not the network of {folder} (model, preset, overrides, width)")
            model = load_model(str(Path(args.arch_from) / run.key)).eval()
        else:
            print(f"{run.key}: no model.safetensors in {folder} (give --arch-from)", file=sys.stderr)
            continue
        models[run.key] = model
        prof = profile_model(model, RESOLUTION)
        train_lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if '"train"' in line]
        rows[run.key] = {
            "label": run.label, "task": run.task, "model": run.model, "preset": run.preset,
            "params_m": prof.params / 1e6, "madds_b": prof.madds / 1e9,
            "steps": train_lines[-1]["step"] if train_lines else None,
            **_accuracy(run, json.loads((folder / "final_metrics.json").read_text())),
        }  # fmt: skip
    machine = Machine.detect()
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("detection", "segmentation"):
            keys = [k for k in rows if BY_KEY[k].task == task]
            if not keys:
                continue
            contenders = [Contender("mnv3", k, timed_module(models[k]), True) for k in keys]
            (Path(tmp) / task).mkdir()
            cases = build_cases(contenders, runtimes=["onnxruntime"], precisions=["fp32"], threads=[1], resolution=RESOLUTION,
                                workdir=Path(tmp) / task)  # fmt: skip
            records = measure(cases, warmup=10, runs=args.runs, repeats=args.repeats, chunk=10)
            for k in keys:
                rows[k]["ort_fp32_ms"] = statistics.median(r.median_ms for r in records if r.model == k)
        for k in args.int8:
            if k in rows:
                rows[k]["int8"] = _int8(BY_KEY[k], out / k, models[k], args.int8_formats, Path(tmp))
    print(f"machine: {machine.line()}")
    for task, cols in (("detection", ("mAP", "mAP50")), ("segmentation", ("mIoU", "pixel_accuracy"))):
        keys = [k for k in rows if BY_KEY[k].task == task]
        if keys:
            print(f"\n| network | {' | '.join(cols)} | params | MAdds | ORT fp32 1 thread |\n|---|{'---|' * (len(cols) + 3)}")
        for k in keys:
            r = rows[k]
            accs = " | ".join(f"{r[c]:.2f}" for c in cols)
            print(f"| {r['label']} | {accs} | {r['params_m']:.3f} M | {r['madds_b']:.3f} B | {r['ort_fp32_ms']:.2f} ms |")
            for fmt, acc in r.get("int8", {}).items():
                drops = ", ".join(f"{c} {acc[c]:.2f} ({acc[c] - r[c]:+.2f})" for c in cols)
                print(f"|   int8 {fmt} | {drops} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine.line(), "resolution": RESOLUTION, "runs": rows}, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train every network (or --runs) with one budget")
    t.add_argument("--out", default="runs/bench-dense")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    t.add_argument("--runs", nargs="+", choices=list(BY_KEY), help="only these runs")
    t.add_argument("--device", default="cpu", help="cpu (the CPU benchmark) or cuda: every run of one budget on one GPU")
    t.add_argument("--workers", type=int, default=0, help="data-loader processes per run (0: loading in the training process)")
    t.add_argument("--seed", type=int, default=0, help="training seed (initialisation, order, augmentation); the data set's stays 0")
    t.add_argument("--eval-interval", type=int, default=1, help="epochs between test evaluations (the last is always evaluated)")
    t.set_defaults(func=train)
    r = sub.add_parser("report", help="accuracy, params, MAdds, latency and int8 drops of the finished runs")
    r.add_argument("--out", default="runs/bench-dense")
    r.add_argument("--int8", nargs="*", default=[], choices=list(BY_KEY), help="runs whose post-training int8 files are scored")
    r.add_argument("--int8-formats", nargs="+", default=["onnx", "executorch"], choices=["onnx", "executorch", "litert"])
    r.add_argument("--runs", type=int, default=30, help="timed calls per repeat")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--json", default=None)
    r.add_argument("--arch-from", default=None, help="runs folder of the same networks, for runs whose weights stayed elsewhere")
    r.set_defaults(func=report)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
