"""``mnv3 data``: make datasets; ``mnv3 data fashion-scenes`` writes the detection / segmentation set that needs no download."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mnv3 data`` and its sub-commands."""
    p = sub.add_parser("data", help="make datasets (fashion-scenes: COCO-format detection and segmentation scenes, no download)")
    datasub = p.add_subparsers(dest="data_command", metavar="DATASET")
    fs = datasub.add_parser(
        "fashion-scenes",
        help="Fashion-MNIST items on photographs: COCO boxes and instance masks, semantic PNG masks",
        description="Compose 320x320 scenes of 1-8 tinted Fashion-MNIST items (24-160 px) on crops of real photographs "
        "(scikit-image's samples, or --backgrounds FOLDER) and write DIR/{train,test}/images, masks (0 background, "
        "1-10 class, 255 ignore) and instances.json (COCO), then DIR/fashion-scenes.json. Same arguments, same bytes; "
        "re-running on a complete DIR is a no-op.",
    )
    fs.add_argument("-o", "--out-dir", dest="output", required=True, metavar="DIR", help="the dataset folder to create")
    fs.add_argument("--train", type=int, default=8000, metavar="N", help="training scenes (default 8000)")
    fs.add_argument("--test", type=int, default=1000, metavar="M", help="test scenes (default 1000)")
    fs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fs.add_argument(
        "--backgrounds", metavar="FOLDER", help="folder of photographs to cut backgrounds from (default: scikit-image's samples)"
    )
    fs.add_argument(
        "--format",
        dest="image_format",
        choices=("jpg", "png"),
        default="jpg",
        help="scene image format (default jpg, quality 95)",
    )
    fs.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files")
    fs.add_argument("--download", action="store_true", help="fetch Fashion-MNIST when it is not installed")
    fs.add_argument("--force", action="store_true", help="replace DIR when it holds something else")
    fs.set_defaults(func=run_fashion_scenes)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_fashion_scenes(args: argparse.Namespace) -> int:
    """Generate (or find complete) the fashion-scenes set and print where it is."""
    from mnv3.data.detection.scenes import generate_fashion_scenes, read_manifest

    existing = read_manifest(args.output)
    out = generate_fashion_scenes(
        args.output,
        train=args.train,
        test=args.test,
        seed=args.seed,
        backgrounds=args.backgrounds,
        image_format=args.image_format,
        data_dir=args.data_dir,
        download=args.download,
        force=args.force,
        progress=True,
        log=lambda line: print(line, file=sys.stderr),
    )
    if existing is not None and read_manifest(out) == existing:
        print(f"{out} is already complete (same arguments); nothing to do")
    else:
        print(
            f"{out}: train/instances.json, test/instances.json, masks in {{train,test}}/masks, manifest {out / 'fashion-scenes.json'}"
        )
    return 0
