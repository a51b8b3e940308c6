"""``mnv3 predict``: top-k labels and probabilities for images, preprocessed as the weights expect.

The weights are a named entry, an mnv3 safetensors file (which carries its spec, so ``--model``
may be omitted) or a torchvision / timm / Keras checkpoint (with ``--model``). A file that is not
an image gets an error line; the others are still predicted, and the exit code is 2 at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mnv3.spec.conventions import Preset

if TYPE_CHECKING:
    from torch import nn

    from mnv3.weights.io import WeightsMeta


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images with named or converted weights")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL opens)")
    p.add_argument("--weights", required=True, help="named weights (see mnv3.weights.list_weights()), an mnv3 .safetensors, or a checkpoint")
    p.add_argument("--model", default=None, help="registered model name (optional for mnv3 files and named weights)")
    p.add_argument("--preset", choices=[x.value for x in Preset], default=None, help="conventions for a foreign checkpoint (default: its library's)")
    p.add_argument("--topk", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    p.set_defaults(func=run)


def load_for_predict(weights: str, model_name: str | None, preset: str | None) -> tuple[nn.Module, WeightsMeta]:
    """(model in eval mode, WeightsMeta) for any kind of weights ``predict`` accepts."""
    from mnv3.weights.checkpoint import FileFormat, detect_format
    from mnv3.weights.io import model_from_file
    from mnv3.weights.load import convert_checkpoint, create_pretrained, load_weights_into
    from mnv3.weights.named import WEIGHTS

    if weights in WEIGHTS:
        entry = WEIGHTS[weights]
        if model_name is not None and model_name != entry.model:
            from mnv3.models.registry import create_model

            model = create_model(model_name, preset=entry.preset)
            meta = load_weights_into(model, entry)  # explains the mismatch
            return model.eval(), meta
        model = create_pretrained(weights)
        return model, model.weights_meta
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"--weights {weights!r} is neither a file nor a named weights entry (see mnv3.weights.list_weights())")
    fmt = detect_format(path)
    if fmt is FileFormat.MNV3:
        model, meta = model_from_file(path)
        if model_name is not None and model_name != model.spec.name:
            raise ValueError(f"{path} holds {model.spec.name}, not --model {model_name}; omit --model (the file carries its spec)")
        return model.eval(), meta
    if model_name is None:
        raise ValueError(f"{path} is a {fmt.value} checkpoint without an mnv3 spec; pass --model NAME (or convert it first with `mnv3 convert`)")
    return convert_checkpoint(path, fmt.value, model_name, preset=preset)


def run(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from mnv3.weights.preprocess import build_transform

    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    model, meta = load_for_predict(args.weights, args.model, args.preset)
    prep = meta.preprocessing
    transform = build_transform(prep)
    k = min(args.topk, model.spec.num_classes)
    named = len(meta.categories) == model.spec.num_classes

    def label(i: int) -> str:
        return meta.categories[i] if named else f"class {i}"

    failed = 0
    for name in args.images:
        try:
            with Image.open(name) as img:
                img = img.convert("L" if prep.grayscale else "RGB")
        except (OSError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
            print(f"mnv3 predict: error: {name}: not a readable image ({e})", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            probs = model(transform(img).unsqueeze(0)).softmax(-1)[0]
        top = probs.topk(k)
        rows = [(int(i), float(p)) for p, i in zip(top.values, top.indices, strict=True)]
        if args.json:
            print(json.dumps({"image": name, "top": [{"index": i, "label": label(i), "prob": p} for i, p in rows]}))
        else:
            print(name)
            for rank, (i, p) in enumerate(rows, start=1):
                print(f"  {rank}. [{i:>4}] {p:.4f}  {label(i)}")
    if failed:
        print(f"mnv3 predict: error: {failed} of {len(args.images)} file(s) could not be read", file=sys.stderr)
        return 2
    return 0
