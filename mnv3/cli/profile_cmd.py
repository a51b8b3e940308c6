"""``mnv3 profile``: parameters and multiply-adds, per layer and in total (paper's counting)."""

from __future__ import annotations

import argparse

from mnv3.cli.common import add_model_options, add_weights_option, load_network


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters and MAdds of a model (conv + linear, as the paper counts)")
    p.add_argument("model", nargs="?", default=None, help="registered name (see `mnv3 models`) or a spec file; optional with --weights")
    add_weights_option(p)
    p.add_argument("--resolution", type=int, default=224, help="input size (default 224)")
    p.add_argument("--per-layer", action="store_true", help="also list every conv / linear layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mnv3.analysis import profile_model

    if args.resolution < 1:
        raise ValueError(f"--resolution must be a positive size, got {args.resolution}")
    model, _ = load_network(args, args.model, warn_random=False)
    prof = profile_model(model, args.resolution)
    print(prof.to_json(per_layer=args.per_layer) if args.json else prof.table(per_layer=args.per_layer))
    return 0
