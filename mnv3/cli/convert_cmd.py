"""``mnv3 convert``: torchvision / timm / Keras checkpoints -> mnv3 safetensors, and mnv3 -> torchvision.

The output is mnv3's own format (spec and metadata in the header, :mod:`mnv3.weights.io`), so
every command and ``mnv3.create_model(..., weights=FILE)`` need nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mnv3.spec.conventions import Preset
from mnv3.weights.convert.common import Library


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert torchvision / timm / Keras MobileNetV3 weights to mnv3 (or mnv3 to torchvision)",
        description="Convert a checkpoint into mnv3's safetensors format, verified against the target model's shapes.",
    )
    direction = p.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from", dest="source", choices=[lib.value for lib in Library], help="library that wrote INPUT")
    direction.add_argument("--to", dest="target", choices=[Library.TORCHVISION.value], help="write mnv3 weights in this library's format")
    p.add_argument("input", help="checkpoint (.pth/.pt/.safetensors, Keras .weights.h5/.h5/.keras) or, with --to, any weights source")
    p.add_argument(
        "--model",
        help="registered mnv3 name or the library's own (e.g. tf_mobilenetv3_large_075); default: told by the checkpoint's shapes",
    )
    p.add_argument("--preset", choices=[x.value for x in Preset], default=None, help="conventions (default: the library's; timm tf_* ports: paper)")
    p.add_argument("--meta-from", metavar="WEIGHTS", default=None, help="copy preprocessing, categories and metrics from this named weights entry")
    p.add_argument("-o", "--output", required=True, help="output file (.safetensors; with --to torchvision: .pth)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mnv3.weights.io import read_weights, save_weights
    from mnv3.weights.load import entry_meta, save_torchvision
    from mnv3.weights.named import get_weights
    from mnv3.weights.resolve import convert_checkpoint, entry_spec, load_model, preset_of, same_network

    out = Path(args.output)
    if args.target is not None:
        if out.suffix not in (".pth", ".pt"):
            raise ValueError(f"--to torchvision writes a torch.save state dict; name the output .pth or .pt, not {out.name!r}")
        model = load_model(args.input, model=args.model, preset=args.preset)
        save_torchvision(model, out)
        print(f"wrote {out} (torchvision state dict of {model.spec.name}, {len(model.state_dict())} tensors)")
        return 0
    if out.suffix != ".safetensors":
        raise ValueError(f"mnv3's format is safetensors; name the output *.safetensors, not {out.name!r}")
    model, meta = convert_checkpoint(args.input, args.source, args.model, preset=args.preset)
    if args.meta_from is not None:
        entry = get_weights(args.meta_from)
        if not same_network(entry_spec(entry), model.spec.replace(num_classes=entry.num_classes)) or preset_of(model.spec) is not entry.preset:
            raise ValueError(f"--meta-from {entry.name} describes {entry.model} (preset {entry.preset.value}), not the converted {model.spec.name}")
        meta = entry_meta(entry)
    save_weights(model, out, meta)
    read_weights(out)  # read back: the file written is complete and loadable
    spec = model.spec
    print(f"wrote {out} ({spec.name}, {args.source} -> mnv3, preset {preset_of(spec).value if preset_of(spec) else 'custom'}, "
          f"{spec.num_classes} classes, {len(model.state_dict())} tensors)")
    return 0
