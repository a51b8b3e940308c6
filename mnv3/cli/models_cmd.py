"""``mnv3 models``: list registered variants, or print one variant's spec as JSON / YAML."""

from __future__ import annotations

import argparse

from mnv3.cli.common import add_model_options, build_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model names, or print a model's spec")
    p.add_argument("model", nargs="?", help="print this model's resolved spec")
    p.add_argument("--yaml", action="store_true", help="print the spec as YAML (default JSON)")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mnv3.models.registry import build_spec, get_variant, list_models
    from mnv3.spec.serialize import spec_to_json, spec_to_yaml

    if args.model is None:
        for name in list_models():
            print(f"{name:<40} {get_variant(name).description}")
        return 0
    kw = build_kwargs(args)
    if args.preset is not None:
        kw["preset"] = args.preset
    if args.num_classes is not None:
        kw["num_classes"] = args.num_classes
    spec = build_spec(args.model, **kw)
    print(spec_to_yaml(spec) if args.yaml else spec_to_json(spec))
    return 0
