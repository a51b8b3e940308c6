"""The ``mnv3`` command: one sub-command module per job (profile, models, ...).

Each module in COMMANDS defines ``register(subparsers)``, which adds its parser and sets
``func`` to a handler taking the parsed args and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = (
    "mnv3.cli.models_cmd",
    "mnv3.cli.profile_cmd",
    "mnv3.cli.convert_cmd",
    "mnv3.cli.predict_cmd",
    "mnv3.cli.train_cmd",
    "mnv3.cli.runs_cmd",
    "mnv3.cli.eval_cmd",
    "mnv3.cli.export_cmd",
    "mnv3.cli.bench_cmd",
    "mnv3.cli.lut_cmd",
    "mnv3.cli.search_cmd",
    "mnv3.cli.data_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    from mnv3 import __version__

    parser = argparse.ArgumentParser(prog="mnv3", description="Build, convert, train, evaluate, export and benchmark MobileNetV3 models (see docs/cli.md).")
    parser.add_argument("--version", action="version", version=f"mnv3 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"mnv3 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mnv3 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
