"""``mnv3 predict``: top-k labels and probabilities for images, preprocessed as the weights expect.

The weights are any source the resolver reads (named entry, mnv3 file, torchvision / timm / Keras
checkpoint, run folder); ``--model`` is needed only where the weights cannot tell. A file that is
not a readable image gets an error line; the others are still predicted, and the exit code is 2
at the end.
"""

from __future__ import annotations

import argparse
import json
import sys

from mnv3.cli.common import add_model_options, add_weights_option, load_network


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images with named, converted or trained weights")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL opens)")
    add_weights_option(p, required=True)
    p.add_argument("--model", default=None, help="registered model name (only where the weights cannot tell, e.g. timm's ambiguous ports)")
    p.add_argument("--topk", type=int, default=5, help="how many classes to print (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mnv3.data.images import open_image
    from mnv3.data.transforms import eval_transform

    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    model, meta = load_network(args, args.model)
    assert meta is not None  # --weights is required
    prep = meta.preprocessing
    transform = eval_transform(prep)
    k = min(args.topk, model.spec.num_classes)
    named = len(meta.categories) == model.spec.num_classes

    def label(i: int) -> str:
        return meta.categories[i] if named else f"class {i}"

    failed = 0
    for name in args.images:
        try:
            img = open_image(name, "L" if prep.grayscale else "RGB")
        except (ValueError, FileNotFoundError) as e:  # open_image names the file and the reason
            print(f"mnv3 predict: error: {e}", file=sys.stderr)
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
