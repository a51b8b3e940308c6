"""Options shared by several sub-commands (model selection, preset, classes)."""

from __future__ import annotations

import argparse
from typing import Any

from mnv3.spec.conventions import Preset


def add_model_options(p: argparse.ArgumentParser, *, default_classes: int | None = 1000) -> None:
    """--preset, --num-classes, --width: the create_model options a command forwards."""
    p.add_argument("--preset", choices=[x.value for x in Preset], default=Preset.PAPER.value, help="library conventions (default: paper / TF-slim)")
    p.add_argument("--num-classes", type=int, default=default_classes, help="classifier size (paper tables use 1001)")
    p.add_argument("--width", type=float, default=None, help="override the width multiplier (0.35-1.25 in the paper)")


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """create_model keyword arguments from the options of :func:`add_model_options`."""
    kw: dict[str, Any] = {"preset": args.preset}
    if args.num_classes is not None:
        kw["num_classes"] = args.num_classes
    if args.width is not None:
        kw["width"] = args.width
    return kw


SPEC_SUFFIXES = (".json", ".yaml", ".yml")


def build_model_from_args(args: argparse.Namespace, name: str):
    """A model from a registered name (with the command's options) or from a spec file path."""
    from pathlib import Path

    from mnv3.models.registry import create_model

    if Path(name).suffix in SPEC_SUFFIXES:
        return create_model(Path(name), num_classes=args.num_classes)
    return create_model(name, **model_kwargs(args))
