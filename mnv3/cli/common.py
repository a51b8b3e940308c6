"""The options every command shares, with one meaning each (docs/cli.md), and the one way commands get a network.

``MODEL`` is a registered name or a spec file; ``--weights SOURCE`` is anything
:func:`mnv3.weights.resolve` reads (named entry, mnv3 file, torchvision / timm / Keras checkpoint,
run folder, training checkpoint). With weights, the weights decide the network and its preset;
MODEL, ``--preset`` and ``--width`` may be given only when they agree.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from torch import nn

from mnv3.models.registry import create_model
from mnv3.spec.conventions import Preset
from mnv3.spec.types import ModelSpec
from mnv3.weights.io import WeightsMeta
from mnv3.weights.resolve import load_model

WEIGHTS_HELP = (
    "named weights (mnv3.weights.list_weights()), an mnv3 .safetensors, a torchvision / timm / Keras checkpoint, "
    "a training run folder or a training checkpoint (.pt)"
)


TASK_ALIASES = {"classify": "classification", "detect": "detection", "segment": "segmentation"}


def task_name(value: str) -> str:
    """A registered task name (or its short alias: classify, detect, segment); the ``--task`` option's type."""
    from mnv3.tasks import task_class

    name = TASK_ALIASES.get(value, value)
    task_class(name)  # an unknown name is a ValueError argparse reports
    return name


def spec_task(spec: ModelSpec) -> str:
    """The task a network does, from its spec: detection with a detection head, segmentation with a segmentation head."""
    if spec.detection is not None:
        return "detection"
    return "segmentation" if spec.segmentation is not None else "classification"


class RandomWeightsWarning(UserWarning):
    """A model is exported or timed with random weights (fine for latency, meaningless for accuracy)."""


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--preset, --num-classes, --width: how to build MODEL (checked against --weights when both are given)."""
    p.add_argument(
        "--preset",
        choices=[x.value for x in Preset],
        default=None,
        help="library conventions (default: the weights', else paper / TF-slim)",
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="classifier size (default: the weights', else 1000; paper tables use 1001)"
    )
    p.add_argument("--width", type=float, default=None, help="width multiplier override (0.35-1.25 in the paper)")


def add_weights_option(p: argparse.ArgumentParser, *, required: bool = False, note: str = "") -> None:
    """--weights SOURCE."""
    p.add_argument("--weights", required=required, default=None, metavar="SOURCE", help=WEIGHTS_HELP + note)


def deprecated_alias(old: str, new: str) -> type[argparse.Action]:
    """An argparse action for an old flag spelling: warns once on stderr, then stores into the new flag's dest."""

    class Alias(argparse.Action):
        def __call__(
            self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None
        ) -> None:
            print(f"mnv3: warning: {old} is deprecated; use {new}", file=sys.stderr)
            setattr(namespace, self.dest, values)

    return Alias


def build_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The create_model keyword arguments the options of :func:`add_model_options` ask for."""
    kw: dict[str, Any] = {}
    if getattr(args, "width", None) is not None:
        kw["width"] = args.width
    return kw


def load_network(
    args: argparse.Namespace, model: str | None, *, warn_random: bool = True
) -> tuple[nn.Module, WeightsMeta | None]:
    """(model in eval mode, weights metadata or None) from MODEL and / or ``--weights``; one path for every command."""
    weights = getattr(args, "weights", None)
    if weights is not None:
        net = load_model(weights, model=model, preset=args.preset, num_classes=args.num_classes, **build_kwargs(args))
        return net.eval(), net.weights_meta
    if model is None:
        raise ValueError("give a MODEL (a registered name, see `mnv3 models`, or a spec file) or --weights SOURCE")
    kw = build_kwargs(args)
    if args.preset is not None:
        kw["preset"] = args.preset
    net = create_model(model, args.num_classes, **kw)
    if warn_random:
        warnings.warn(
            f"no --weights given: {net.spec.name} is randomly initialised (fine for latency and graph checks, meaningless predictions)",
            RandomWeightsWarning,
            stacklevel=2,
        )
    return net.eval(), None
