"""``mnv3 lut``: build, show and query latency lookup tables (paper §4.2: NetAdapt optimises measured latency)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict

from mnv3.cli.common import add_model_options, build_kwargs

DEFAULT_MODELS = ("mobilenetv3_large_100", "mobilenetv3_small_100")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lut",
        help="latency lookup tables: per-layer latency measured in a runtime, summed to predict a network's",
        description=(
            "Each distinct layer configuration (stem, bottleneck, head conv, pooling, hidden layer, classifier) is built "
            "alone from mnv3's blocks, exported and timed in the runtime (batch 1, interleaved repeats, median and spread) "
            "and stored in SQLite with the device and runtime. A network's prediction is the sum of its layers plus the "
            "runtime's per-call overhead (docs/benchmarks.md, 'Latency lookup tables')."
        ),
    )
    lsub = p.add_subparsers(dest="lut_command", metavar="ACTION")

    b = lsub.add_parser("build", help="measure every layer configuration of some networks into a table (resumes)")
    b.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), metavar="MODEL", help=f"registered names or spec files (default: {' '.join(DEFAULT_MODELS)})")
    b.add_argument("--runtime", default="onnxruntime", choices=["eager", "onnxruntime", "executorch", "litert"], help="runtime to time in (default onnxruntime)")
    b.add_argument("--threads", type=int, default=1, help="threads pinned in the runtime (default 1, as the paper's single-core numbers)")
    b.add_argument("--resolution", nargs="+", type=int, default=[224], help="input sizes (default 224)")
    b.add_argument("-o", "--output", required=True, metavar="FILE", help="the table (.db); an existing one is resumed")
    b.add_argument("--warmup", type=int, default=10, help="untimed calls per layer (default 10)")
    b.add_argument("--runs", type=int, default=30, help="timed calls per layer and repeat (default 30)")
    b.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    b.add_argument("--group", type=int, default=8, help="layers timed interleaved and committed together (default 8)")
    b.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    add_model_options(b)
    b.set_defaults(func=run_build)

    s = lsub.add_parser("show", help="the table's device, runtime and entries (median, p10-p90, calls)")
    s.add_argument("table", metavar="FILE")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=run_show)

    q = lsub.add_parser("predict", help="a network's predicted latency: per-layer breakdown and total")
    q.add_argument("table", metavar="FILE")
    q.add_argument("model", metavar="MODEL", help="registered name or spec file")
    q.add_argument("--resolution", type=int, default=None, help="input size (default: the table's, when it holds one)")
    q.add_argument("--measure", action="store_true", help="also time the whole network in the table's runtime")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_options(q)
    q.set_defaults(func=run_predict)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _spec(args: argparse.Namespace, model: str):
    from mnv3.models.registry import resolve_spec

    kw = build_kwargs(args)
    if getattr(args, "preset", None) is not None:
        kw["preset"] = args.preset
    return resolve_spec(model, args.num_classes, **kw)


def _plan(args: argparse.Namespace):
    from mnv3.search.lut import TimingPlan

    return TimingPlan(warmup=args.warmup, runs=args.runs, repeats=args.repeats)


def run_build(args: argparse.Namespace) -> int:
    from mnv3.search.lut import LatencyTable, Measurer, Target, build_table

    if args.threads < 1 or any(r < 1 for r in args.resolution):
        raise ValueError(f"--threads and --resolution must be >= 1, got {args.threads} and {args.resolution}")
    specs = [_spec(args, m) for m in args.models]
    measurer = Measurer(args.runtime, args.threads, _plan(args))
    target = Target.here(args.runtime, args.threads)
    text = sys.stderr if args.json else sys.stdout
    measured = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter; the table is the output
        with LatencyTable(args.output, target, create=True) as table:
            before = len(table)
            for r in args.resolution:
                measured += build_table(table, specs, r, measurer, group=args.group, log=lambda m: print(f"mnv3 lut: {m}", file=sys.stderr))
            total = len(table)
    print(f"{args.output}: {target.describe()}; {total} entries ({before} kept, {measured} measured now)", file=text)
    if args.json:
        print(json.dumps({"table": args.output, "target": asdict(target), "entries": total, "kept": before, "measured": measured}))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from mnv3.search.lut import LatencyTable

    with LatencyTable(args.table) as table:
        entries = table.entries()
        target, machine, created = table.target, table.machine, table.created_at
    if args.json:
        print(
            json.dumps(
                {
                    "table": args.table,
                    "target": asdict(target),
                    "machine": machine.line(),
                    "created_at": created,
                    "entries": [{**e.key.to_row(), "label": e.key.label(), **asdict(e.timing), "measured_at": e.measured_at, "load_avg": e.load_avg} for e in entries],
                }
            )
        )
        return 0
    print(f"{args.table}: {target.describe()}\nmachine: {machine.line()}\ncreated {created}; {len(entries)} entries")
    head = f"{'configuration':<56} {'median ms':>9} {'p10-p90 ms':>17} {'calls':>6}"
    print(head)
    print("-" * len(head))
    for e in entries:
        t = e.timing
        print(f"{e.key.label():<56} {t.median_ms:>9.4f} {t.p10_ms:>8.4f}-{t.p90_ms:<8.4f} {t.runs:>6}")
    return 0


def _resolution(table, requested: int | None) -> int:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--resolution must be >= 1, got {requested}")
        return requested
    from mnv3.search.lut import LayerKind

    sizes = sorted({e.key.in_h for e in table.entries() if e.key.kind is LayerKind.OVERHEAD})
    if len(sizes) != 1:
        raise ValueError(f"{table.path} holds networks at {sizes or 'no'} resolution(s); give --resolution")
    return sizes[0]


def run_predict(args: argparse.Namespace) -> int:
    from mnv3.models.registry import build_network
    from mnv3.search.lut import LatencyTable, Measurer, Target, predict

    spec = _spec(args, args.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with LatencyTable(args.table) as stored:
            res = _resolution(stored, args.resolution)
            runtime, threads = stored.target.runtime, stored.target.threads
            from mnv3.search.lut.keys import network_layers, overhead_key

            complete = not stored.missing([overhead_key(spec, res), *(la.key for la in network_layers(spec, res))])
        # measuring (missing entries, --measure) needs this machine to be the table's: open it for here and now
        needs_device = args.measure or not complete
        target = Target.here(runtime, threads) if needs_device else None
        measurer = Measurer(runtime, threads) if needs_device else None
        with LatencyTable(args.table, target) as table:
            pred = predict(table, spec, res, measurer)
        if args.measure:
            from dataclasses import replace

            assert measurer is not None
            pred = replace(pred, measured=measurer.measure_networks([build_network(spec)], res)[0])
    print(json.dumps(pred.to_dict()) if args.json else pred.table())
    return 0
