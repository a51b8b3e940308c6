"""``mnv3 eval``: top-1 / top-5, per-class accuracy and a confusion-matrix PNG for any weights source."""

from __future__ import annotations

import argparse

from mnv3.cli.common import WEIGHTS_HELP, deprecated_alias
from mnv3.data.fashion_mnist import NAME as FASHION_MNIST
from mnv3.spec.conventions import Preset


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 eval``."""
    p = sub.add_parser(
        "eval",
        help="evaluate weights (top-1/top-5, per-class accuracy, confusion matrix)",
        description=f"SOURCE is {WEIGHTS_HELP}.",
    )
    p.add_argument("source", metavar="SOURCE", help="the weights to evaluate (same sources as --weights elsewhere)")
    p.add_argument("--model", default=None, help="registered model name (only where the weights cannot tell)")
    p.add_argument("--preset", choices=[x.value for x in Preset], default=None, help="conventions (default: the weights')")
    p.add_argument("--data", default=FASHION_MNIST, help=f"'{FASHION_MNIST}' or an ImageFolder root (default {FASHION_MNIST})")
    p.add_argument("--split", default="test", help="split folder under the root / Fashion-MNIST split (default test)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--device", default="auto")
    p.add_argument("--subset", type=int, help="evaluate N images spread over the whole set (every class)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out-dir", help="folder for eval-<split>.json and confusion-<split>.png (default: next to SOURCE)")
    p.add_argument("--output", dest="out_dir", action=deprecated_alias("--output", "--out-dir"), help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print top-1 / top-5 and the per-class table."""
    import math

    import torch

    from mnv3.train.eval_job import run_eval

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1 or (args.subset is not None and args.subset < 1):
        raise ValueError(f"--batch-size and --subset must be >= 1, got {args.batch_size} and {args.subset}")
    result, out = run_eval(
        args.source, args.data, args.split, args.data_dir, args.batch_size, args.device, args.out_dir, args.subset,
        model=args.model, preset=args.preset,
    )
    print(f"top-1 {100 * result.top1:.2f} %   top-5 {100 * result.top5:.2f} %   loss {result.loss:.4f}   ({result.count} images)")
    names = result.classes or [str(i) for i in range(len(result.per_class))]
    w = max(len(n) for n in names)
    print("per-class accuracy:")
    for n, acc in zip(names, result.per_class, strict=True):
        print(f"  {n:<{w}}  {'  n/a' if math.isnan(acc) else f'{100 * acc:6.2f} %'}")
    print(f"report: {out / f'eval-{args.split}.json'}   confusion matrix: {out / f'confusion-{args.split}.png'}")
    return 0
