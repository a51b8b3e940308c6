"""``mnv3 train``: train a classifier from a recipe; with no arguments, Fashion-MNIST on the CPU."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mnv3.cli.common import deprecated_alias, task_name
from mnv3.spec.conventions import Preset

# flag -> config field; every flag defaults to None so only the flags given override the recipe
FLAG_FIELDS = {
    "task": "task",
    "model": "model",
    "data": "data",
    "data_dir": "data_dir",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "output": "output",
    "name": "name",
    "seed": "seed",
    "device": "device",
    "weights": "weights",
    "resolution": "resolution",
    "workers": "workers",
    "precision": "precision",
    "preset": "preset",
}
SWITCHES = ("deterministic", "qat", "strict", "download", "compile", "sync_bn")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 train`` and its flags."""
    p = sub.add_parser(
        "train",
        help="train a classifier (default: MobileNetV3-Small on Fashion-MNIST, CPU)",
        description="Train from a recipe (fashion-mnist, paper, torchvision, timm, or a YAML file). Flags and "
        "--set KEY=VALUE override any recipe field; the resolved config is saved as config.yaml in the run folder.",
    )
    p.add_argument(
        "--recipe",
        help="packaged recipe name or YAML path (default: the task's: fashion-mnist, fashion-scenes for detection, fashion-scenes-lraspp for segmentation)",
    )
    p.add_argument(
        "--task", type=task_name, help="classification (default), detection (alias detect), segmentation (alias segment)"
    )
    p.add_argument("--model", help="registered model name (mnv3 models)")
    p.add_argument("--data", help="'fashion-mnist' or an ImageFolder root (train/ and val/ inside)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="stop after N steps (the schedule still spans --epochs)")
    p.add_argument("--batch-size", type=int, help="global batch over all processes")
    p.add_argument("--lr", type=float, help="learning rate at the recipe's lr_base_batch (scaled linearly to --batch-size)")
    p.add_argument("--resolution", type=int)
    p.add_argument("--out-dir", dest="output", help="parent folder of runs (default runs/)")
    p.add_argument("--output", dest="output", action=deprecated_alias("--output", "--out-dir"), help=argparse.SUPPRESS)
    p.add_argument("--name", help="run folder name (default: model-data-timestamp)")
    p.add_argument("--resume", help="run folder or checkpoint to continue exactly where it stopped")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    p.add_argument(
        "--preset", choices=[x.value for x in Preset], help="model conventions (default: the --weights' preset, else paper)"
    )
    p.add_argument("--weights", help="start from these weights (named entry or file); the classifier is resized")
    p.add_argument("--workers", type=int, help="data-loader worker processes")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic kernels")
    p.add_argument("--qat", action="store_true", default=None, help="quantization-aware training (mnv3.deploy.quantize)")
    p.add_argument(
        "--strict", action="store_true", default=None, help="fail on unreadable dataset files instead of skipping them"
    )
    p.add_argument("--download", action="store_true", default=None, help="download Fashion-MNIST if it is not found")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under torchrun (CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line sets."""
    from mnv3.train.config import parse_set

    out: dict[str, Any] = {}
    for flag, fieldname in FLAG_FIELDS.items():
        v = getattr(args, flag)
        if v is not None:
            out[fieldname] = v
    for s in SWITCHES:
        if getattr(args, s):
            out[s] = True
    if args.no_progress:
        out["progress"] = False
    out.update(parse_set(args.set))
    return out


def run(args: argparse.Namespace) -> int:
    """Resolve the config (recipe or checkpoint, then flags), train, print the result; returns the exit code."""
    from mnv3.train.config import apply_overrides, dump_config, load_recipe
    from mnv3.train.engine import RunStatus, resume_config, train
    from mnv3.train.run_state import RunLockedError

    overrides = overrides_from_args(args)
    if args.resume:
        cfg = apply_overrides(resume_config(args.resume), overrides)
    else:
        from mnv3.train.config import DEFAULT_RECIPES

        task = overrides.get("task", "classification")
        if args.recipe is None and task not in DEFAULT_RECIPES:
            raise ValueError(f"mnv3 train has no default recipe for task {task!r} yet; pass --recipe FILE")
        cfg = load_recipe(args.recipe or DEFAULT_RECIPES[task], overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    hooks = None
    if cfg.qat:
        from mnv3.deploy.quantize import qat_hooks

        hooks = qat_hooks()
    try:
        result = train(cfg, resume=args.resume, hooks=hooks)
    except RunLockedError as e:
        print(f"mnv3 train: error: {e}", file=sys.stderr)
        return 2
    if result.status in (RunStatus.NONFINITE, RunStatus.WRITE_FAILED):
        print(f"mnv3 train: error: {result.message}", file=sys.stderr)
        return result.exit_code
    if result.status is RunStatus.INTERRUPTED:
        print(f"mnv3 train: {result.message}", file=sys.stderr)
        return result.exit_code
    if result.summary:
        count = result.final.get("count", "?")
        print(f"{result.split}: {result.summary} ({count} images) after {result.epoch:.2f} epochs, {result.wall_s / 60:.1f} min")
    print(f"run folder: {result.run_dir}")
    if result.weights:
        print(f"weights: {result.weights}  (mnv3 eval {result.weights}; mnv3 predict --weights {result.weights} IMAGE)")
    return 0
