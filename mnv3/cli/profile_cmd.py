"""``mnv3 profile``: parameters and multiply-adds, per layer and in total (paper's counting)."""

from __future__ import annotations

import argparse

from mnv3.cli.common import add_model_options, add_weights_option, load_network


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters and MAdds of a model (conv + linear, as the paper counts)")
    p.add_argument("model", nargs="?", default=None, help="registered name (see `mnv3 models`) or a spec file; optional with --weights")
    add_weights_option(p)
    p.add_argument("--resolution", type=parse_resolution, default=(224, 224), help="input size: H (square) or HxW, e.g. 1024x2048 (default 224)")
    p.add_argument("--per-layer", action="store_true", help="also list every conv / linear layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_options(p)
    p.set_defaults(func=run)


def parse_resolution(text: str) -> tuple[int, int]:
    """``224`` -> (224, 224), ``1024x2048`` -> (1024, 2048): height then width (segmentation at §6.4's 1024x2048)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected H or HxW (e.g. 224 or 1024x2048), got {text!r}")
    h, w = (int(parts[0]), int(parts[-1]))
    return h, w


def run(args: argparse.Namespace) -> int:
    from mnv3.analysis import profile_model

    if min(args.resolution) < 1:
        raise ValueError(f"--resolution must be a positive size, got {'x'.join(map(str, args.resolution))}")
    model, _ = load_network(args, args.model, warn_random=False)
    prof = profile_model(model, args.resolution)
    print(prof.to_json(per_layer=args.per_layer) if args.json else prof.table(per_layer=args.per_layer))
    return 0
