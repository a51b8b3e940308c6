"""``mnv3 bench``: latency (median / p90 / min-max) and throughput across runtimes, mnv3 vs a peer in the same run.

Detectors are timed up to their raw head outputs (both fetched), segmenters on their logits; the peer is
picked by the network's kind (:func:`mnv3.deploy.peers.peer_model`). Dense tasks take ``--resolution HxW``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

from mnv3.cli.common import RandomWeightsWarning, add_model_options, add_weights_option, deprecated_alias, load_network
from mnv3.deploy.runtimes import Runtime

RUNTIMES = tuple(r.value for r in Runtime)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency / throughput in eager, torch.compile, ONNX Runtime, ExecuTorch (XNNPACK), LiteRT; fp32 and int8",
        description=(
            "Build every requested case (export, quantize, compile), then time them interleaved in short chunks so all "
            "see the same machine state; thread counts pinned. --compare torchvision measures torchvision's equivalent "
            "model through the same runtimes in the same run and prints the ratios (below 1 = mnv3 faster)."
        ),
    )
    p.add_argument(
        "model", nargs="?", default=None, help="registered name (see `mnv3 models`) or a spec file; optional with --weights"
    )
    add_weights_option(p, note="; random init without (latency does not depend on the values)")
    p.add_argument(
        "--runtime", nargs="+", default=["all"], choices=[*RUNTIMES, "all"], help="runtimes to time (default: all installed)"
    )
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "int8"], help="fp32 and/or int8 (default fp32)")
    p.add_argument(
        "--threads", nargs="+", type=int, default=[1], help="thread counts to pin (default 1, as the paper's single-core numbers)"
    )
    p.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="SIZE",
        help="input side, or HxW for detectors and segmenters (default 224; 320 for detectors, 512x1024 for segmenters)",
    )
    p.add_argument(
        "--batch-size", nargs="+", type=int, default=[1], help="batch sizes to time; >1 measures throughput (default 1)"
    )
    p.add_argument(
        "--batch",
        dest="batch_size",
        nargs="+",
        type=int,
        action=deprecated_alias("--batch", "--batch-size"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per case before timing (default 10)")
    p.add_argument("--runs", type=int, default=50, help="timed calls per case and repeat (default 50)")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats; ratios are formed within each (default 1)")
    p.add_argument("--chunk", type=int, default=10, help="calls per case before switching to the next case (default 10)")
    p.add_argument("--compare", choices=["torchvision"], default=None, help="also time this library's equivalent model")
    p.add_argument(
        "--calibration", default=None, help="int8 calibration images: folder or 'fashion-mnist' (default: random inputs)"
    )
    p.add_argument("--data-dir", default=None, help="where the Fashion-MNIST IDX files are")
    p.add_argument("--per-layer", action="store_true", help="per-layer latency breakdown of the mnv3 model in ONNX Runtime")
    p.add_argument("--plot", default=None, help="write the per-layer breakdown as a PNG here (implies --per-layer)")
    p.add_argument(
        "--json",
        nargs="?",
        const=True,
        default=False,
        metavar="FILE",
        help="print the records (latency and per-layer) as JSON lines instead of tables (--json FILE: deprecated, use --records)",
    )
    p.add_argument("--records", default=None, metavar="FILE", help="also append the JSON-lines records to FILE")
    p.add_argument("--workdir", default=None, help="keep the exported files here (default: a temporary folder)")
    add_model_options(p)
    p.set_defaults(func=run)


DEFAULT_RESOLUTION = {"classifier": 224, "detector": 320, "segmenter": (512, 1024)}


def _resolution(value: str) -> int | tuple[int, int]:
    """``224`` (a square input) or ``512x1024`` (height x width)."""
    parts = value.lower().split("x")
    if len(parts) > 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{value!r} is not a size: give a side (224) or HEIGHTxWIDTH (512x1024)")
    return int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))


def _pick_resolution(args: argparse.Namespace, kind: str) -> int | tuple[int, int]:
    """The resolution to time at: the one given (HxW only for dense tasks), else the network kind's default."""
    res = DEFAULT_RESOLUTION[kind] if args.resolution is None else args.resolution
    if isinstance(res, tuple):
        h, w = res
        if h == w:
            return h
        if kind == "classifier":
            raise ValueError(f"--resolution {h}x{w}: a classifier is timed on square inputs; give one side")
        if args.calibration is not None or args.per_layer or args.plot:
            raise ValueError(f"--resolution {h}x{w}: --calibration and --per-layer / --plot take square inputs; give one side")
    return res


def _runtimes(requested: list[str]) -> list[str]:
    from mnv3.deploy.runtimes import EXTRAS, RUNTIME_FORMAT, available, require

    if "all" in requested:
        out = []
        for r in RUNTIMES:
            fmt = RUNTIME_FORMAT[Runtime(r)]
            if fmt is None or available(fmt):
                out.append(r)
            else:
                print(
                    f"mnv3 bench: note: skipping {r} (not installed: pip install 'mnv3[{EXTRAS[fmt].name}]')",
                    file=sys.stderr,
                )
        return out
    for r in requested:
        fmt = RUNTIME_FORMAT[Runtime(r)]
        if fmt is not None:
            require(fmt)
    return list(dict.fromkeys(requested))


def _check_args(args: argparse.Namespace) -> None:
    if isinstance(args.json, str):  # the old meaning: a file to append to
        print("mnv3: warning: --json FILE is deprecated; use --records FILE (--json alone prints the records)", file=sys.stderr)
        args.records, args.json = args.records or args.json, False
    if args.runs < 1 or args.warmup < 0 or args.repeats < 1 or args.chunk < 1:
        raise ValueError("--runs, --repeats and --chunk must be >= 1 and --warmup >= 0")
    if any(t < 1 for t in args.threads) or any(b < 1 for b in args.batch_size):
        raise ValueError(f"--threads and --batch-size must be >= 1, got {args.threads} and {args.batch_size}")
    if args.calibration is not None and "int8" not in args.precision:
        raise ValueError("--calibration is only used with --precision int8")


def run(args: argparse.Namespace) -> int:
    import torch

    from mnv3.deploy.bench import Contender, build_cases, format_ratios, format_table, measure, ratios, resolution_text, summarize
    from mnv3.deploy.loading import preprocessing_for
    from mnv3.deploy.peers import NetworkKind, network_kind, params, peer_model, timed_module
    from mnv3.deploy.records import Machine, load_average, write_jsonl

    _check_args(args)
    runtimes = _runtimes(args.runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)  # latency does not depend on the weights
        model, meta = load_network(args, args.model)
    spec = model.spec
    kind = network_kind(spec)
    args.resolution = resolution = _pick_resolution(args, kind.value)
    if kind is NetworkKind.DETECTOR and (args.per_layer or args.plot):
        raise ValueError("--per-layer / --plot: the per-layer breakdown is for classifiers and segmenters")
    contenders = [Contender("mnv3", spec.name, timed_module(model), True)]
    if args.compare:
        peer, call = peer_model(args.compare, model)
        contenders.append(Contender(args.compare, call, peer, False))
        if params(peer) != params(model):
            print(
                f"mnv3 bench: note: {call} has {params(peer):,} parameters, {spec.name} {params(model):,}: "
                f"torchvision's {kind.value} builder cannot express this variant exactly, so the ratios compare near neighbours",
                file=sys.stderr,
            )
    calib = None
    if args.calibration and "int8" in args.precision:
        from mnv3.deploy.calibration import calibration_images

        calib = calibration_images(
            args.calibration, preprocessing_for(meta, args.resolution, spec.in_chans), spec.in_chans, 64, args.data_dir
        )
    machine = Machine.detect()
    load = load_average()
    text = sys.stderr if args.json else sys.stdout  # with --json, stdout holds only the records
    print(
        f"machine: {machine.line()}; load average {load[0] if load else float('nan'):.2f}; input {resolution_text(resolution)}",
        file=text,
    )
    with tempfile.TemporaryDirectory(prefix="mnv3-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        artifacts: dict = {}
        cases = build_cases(
            contenders,
            runtimes=runtimes,
            precisions=args.precision,
            threads=args.threads,
            batches=args.batch_size,
            resolution=resolution,
            workdir=workdir,
            calibration=calib,
            artifacts=artifacts,
            log=lambda msg: print(f"mnv3 bench: {msg}", file=sys.stderr),
        )
        if not cases:
            raise ValueError("nothing to time: every requested runtime / precision combination was skipped")
        records = measure(
            cases,
            warmup=args.warmup,
            runs=args.runs,
            repeats=args.repeats,
            chunk=args.chunk,
            progress=lambda s: print(s, file=sys.stderr),
        )
        print(format_table(summarize(records)), file=text)
        if args.compare:
            print(f"\nratios (mnv3 / {args.compare}; < 1 means mnv3 is faster), formed within each repeat:", file=text)
            print(format_ratios(ratios(records, args.compare), args.compare), file=text)
        out: list = list(records)
        if args.per_layer or args.plot:
            out += _per_layer(args, model, workdir, artifacts, records, machine, text)
        if args.json:
            for r in out:
                print(json.dumps(r.to_dict()))
        if args.records:
            write_jsonl(args.records, out, append=True)
            print(f"appended {len(out)} records to {args.records}", file=text)
    torch.set_num_threads(max(args.threads))
    return 0


def _per_layer(args, model, workdir: Path, artifacts: dict, records, machine, text) -> list:
    import torch

    from mnv3.deploy.export import build_artifact
    from mnv3.deploy.layers import format_layers, layer_breakdown, plot_layers
    from mnv3.deploy.records import LayerRecord
    from mnv3.deploy.runtimes import Format, require, runtime_version

    require(Format.ONNX)
    spec = model.spec
    threads = args.threads[0]
    key = ("mnv3", spec.name, Format.ONNX, "fp32", (args.resolution, args.resolution), 0, True)
    path = artifacts.get(key)
    if path is None:
        path = workdir / f"mnv3-{spec.name}-layers.onnx"
        build_artifact(model, Format.ONNX, path, torch.randn(1, spec.in_chans, args.resolution, args.resolution))
    x = torch.randn(1, spec.in_chans, args.resolution, args.resolution)
    rows = layer_breakdown(path, x, threads, runs=max(5, min(args.runs, 50)), warmup=min(args.warmup, 5))
    whole = next(
        (
            r.median_ms
            for r in records
            if (r.source, r.runtime, r.precision, r.threads, r.batch) == ("mnv3", "onnxruntime", "fp32", threads, 1)
        ),
        None,
    )
    print(f"\nper-layer breakdown, ONNX Runtime fp32, {threads} thread(s), {args.resolution}x{args.resolution}:", file=text)
    print(format_layers(rows, whole), file=text)
    if args.plot:
        plot_layers(rows, args.plot, f"{spec.name} in ONNX Runtime {runtime_version('onnxruntime')}, fp32, {threads} thread(s)")
        print(f"wrote {args.plot}", file=text)
    version = runtime_version("onnxruntime")
    return [
        LayerRecord(
            spec.name, "onnxruntime", version, "fp32", threads, args.resolution, r.layer, r.ops, r.median_us, r.share, machine
        )
        for r in rows
    ]
