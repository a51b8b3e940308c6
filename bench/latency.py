"""Side-by-side latency: mnv3's exports vs torchvision's MobileNetV3 through the same runtimes, one run.

mnv3 is timed under each ``--presets`` convention set (default: ``paper``, TF-slim's SAME padding,
and ``torchvision``'s symmetric padding); the architecture is the same.

For each model every case (eager, torch.compile, ONNX Runtime, ExecuTorch-XNNPACK, LiteRT; fp32 and
int8) is built for both libraries, then all are timed interleaved (``mnv3.deploy.bench.measure``)
for several repeats; ratios are formed within each repeat. torchvision goes through each runtime's
documented default flow (torch.export / torch.onnx / litert-torch defaults, ORT's quant_pre_process
before static QDQ); mnv3 through ``mnv3 export``'s flow. Writes JSON lines and a Markdown table.

    .venv/bin/python bench/latency.py --models mobilenetv3_large_100 mobilenetv3_small_100 --repeats 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from mnv3.deploy.bench import PRECISIONS, Contender, build_cases, measure, ratios
from mnv3.deploy.loading import RandomWeightsWarning, load_model
from mnv3.deploy.peers import torchvision_equivalent
from mnv3.deploy.records import LatencyRecord, Machine, load_average, write_jsonl
from mnv3.deploy.runtimes import RUNTIME_FORMAT, Runtime, available, runtime_version

RUNTIMES = tuple(r.value for r in Runtime)


def contenders(name: str, presets: list[str]) -> list[Contender]:
    """mnv3 under each preset (source ``mnv3[<preset>]``) and torchvision's equivalent network."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        for preset in presets:
            model, _ = load_model(name, preset=preset)
            out.append(Contender(f"mnv3[{preset}]", name, model, True))
    peer, call = torchvision_equivalent(out[0].model)
    return [*out, Contender("torchvision", call, peer, False)]


def _fmt(ms: list[float]) -> str:
    return f"{statistics.median(ms):.2f} ({min(ms):.2f}-{max(ms):.2f})"


def _as_mnv3(records: list[LatencyRecord], source: str) -> list[LatencyRecord]:
    """The records of one mnv3 preset relabelled ``mnv3``, plus the peer's, for :func:`ratios`."""
    return [
        dataclasses.replace(r, source="mnv3") if r.source == source else r for r in records if r.source in (source, "torchvision")
    ]


def markdown(records: list[LatencyRecord], model: str) -> str:
    """One table per model: each runtime and precision, every source, and the within-repeat ratios to torchvision."""
    sources = [s for s in dict.fromkeys(r.source for r in records) if s != "torchvision"]
    same = {
        src: {(r.mnv3, r.precision, r.threads): r for r in ratios(_as_mnv3(records, src), "torchvision") if r.what == "same runtime"}
        for src in sources
    }
    rows = []
    for rt, prec, th in dict.fromkeys((r.runtime, r.precision, r.threads) for r in records):
        p = [r.median_ms for r in records if (r.source, r.runtime, r.precision, r.threads) == ("torchvision", rt, prec, th)]
        cells, ratio_cells = [], []
        for src in sources:
            m = [r.median_ms for r in records if (r.source, r.runtime, r.precision, r.threads) == (src, rt, prec, th)]
            cells.append(_fmt(m) if m else "-")
            q = same[src].get((rt, prec, th))
            ratio_cells.append(f"{q.ratio:.3f} ({min(q.per_repeat):.3f}-{max(q.per_repeat):.3f})" if q else "-")
        rows.append(
            f"| {rt} {runtime_version(rt)} | {prec} | {th} | "
            + " | ".join(cells)
            + f" | {_fmt(p) if p else '-'} | "
            + " | ".join(ratio_cells)
            + " |"
        )
    head = [
        f"**{model}** ({records[0].resolution}x{records[0].resolution}, batch 1; median of the per-repeat medians in ms, range over repeats in brackets; "
        "ratio = mnv3 / torchvision formed within each repeat)",
        "",
        "| runtime | precision | threads | "
        + " | ".join(sources)
        + " | torchvision | "
        + " | ".join(f"ratio {s}" for s in sources)
        + " |",
        "|---|---|---|" + "---|" * (2 * len(sources) + 1),
    ]
    tail = [
        "",
        "| fastest vs fastest | precision | threads | mnv3 (runtime) | torchvision (runtime) | ratio (range over repeats) |",
        "|---|---|---|---|---|---|",
    ]
    for src in sources:
        for r in ratios(_as_mnv3(records, src), "torchvision"):
            if r.what != "fastest vs fastest":
                continue
            tail.append(
                f"| {src} | {r.precision} | {r.threads} | {r.mnv3_ms:.2f} ({r.mnv3}) | {r.peer_ms:.2f} ({r.peer}) | "
                f"**{r.ratio:.3f}** ({min(r.per_repeat):.3f}-{max(r.per_repeat):.3f}) |"
            )
    return "\n".join(head + rows + tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mobilenetv3_large_100", "mobilenetv3_small_100"])
    ap.add_argument("--presets", nargs="+", default=["paper", "torchvision"], help="mnv3 presets to time (each its own column)")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--out", default="runs/bench/latency.jsonl")
    ap.add_argument("--markdown", default="runs/bench/latency.md")
    args = ap.parse_args()
    runtimes = [r for r in args.runtimes if RUNTIME_FORMAT[Runtime(r)] is None or available(RUNTIME_FORMAT[Runtime(r)])]
    machine = Machine.detect()
    parts = [
        f"Machine: {machine.line()}. torch {torch.__version__}; "
        + ", ".join(f"{r} {runtime_version(r)}" for r in runtimes if r not in ("eager", "compile"))
    ]
    all_records: list[LatencyRecord] = []
    for name in args.models:
        print(f"{name}: building (load average {load_average()})", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="mnv3-latency-") as tmp:
            cases = build_cases(
                contenders(name, args.presets),
                runtimes=runtimes,
                precisions=PRECISIONS,
                threads=args.threads,
                resolution=args.resolution,
                workdir=Path(tmp),
                log=lambda s: print("  " + s, file=sys.stderr, flush=True),
            )
            load_before = load_average()
            t0 = time.strftime("%Y-%m-%d %H:%M:%S")
            records = measure(
                cases,
                warmup=args.warmup,
                runs=args.runs,
                repeats=args.repeats,
                chunk=args.chunk,
                progress=lambda s: print("  " + s, file=sys.stderr, flush=True),
            )
            load_after = load_average()
        all_records += records
        parts.append(markdown(records, name))
        parts.append(
            f"_{len(cases)} cases x {args.runs} timed calls x {args.repeats} repeats, interleaved in chunks of {args.chunk}; "
            f"timing started {t0}; 1-min load average {load_before[0] if load_before else 'n/a'} before, "
            f"{load_after[0] if load_after else 'n/a'} after._"
        )
        write_jsonl(args.out, records, append=True)
    text = "\n\n".join(parts) + "\n"
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
