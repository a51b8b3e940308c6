"""``mnv3 eval``: top-1 / top-5, per-class accuracy and a confusion-matrix PNG for saved weights."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate weights or a checkpoint (top-1/top-5, per-class accuracy, confusion matrix)",
        description="SOURCE is an mnv3 .safetensors file, a training checkpoint (.pt) or a run folder.",
    )
    p.add_argument("source", help="weights file, checkpoint or run folder")
    p.add_argument("--data", default="fashion-mnist", help="'fashion-mnist' or an ImageFolder root")
    p.add_argument("--split", default="test", help="split folder under the root / Fashion-MNIST split (default test)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--subset", type=int, help="evaluate only the first N images")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--output", help="where eval-<split>.json and confusion-<split>.png go (default: next to SOURCE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print top-1 / top-5 and the per-class table."""
    import math

    import torch

    from mnv3.train.eval_job import run_eval

    if args.threads:
        torch.set_num_threads(args.threads)
    result, out = run_eval(args.source, args.data, args.split, args.data_dir, args.batch_size, args.device, args.output, args.subset)
    print(f"top-1 {100 * result.top1:.2f} %   top-5 {100 * result.top5:.2f} %   loss {result.loss:.4f}   ({result.count} images)")
    names = result.classes or [str(i) for i in range(len(result.per_class))]
    w = max(len(n) for n in names)
    print("per-class accuracy:")
    for n, acc in zip(names, result.per_class, strict=True):
        print(f"  {n:<{w}}  {'  n/a' if math.isnan(acc) else f'{100 * acc:6.2f} %'}")
    print(f"report: {out / f'eval-{args.split}.json'}   confusion matrix: {out / f'confusion-{args.split}.png'}")
    return 0
