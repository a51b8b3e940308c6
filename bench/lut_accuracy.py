"""How well a latency lookup table predicts whole-network latency (paper §4.2: NetAdapt optimises measured latency).

For V3-Large / V3-Small at widths 0.35-1.25 and N random specs (mnv3.search.random_spec: per-block
kernel, SE and widths), build the table (resumable: the .db files persist), predict every network,
then measure every network whole, interleaved, in the same run. Reports per runtime the mean
absolute relative error, the median signed error and Kendall's tau between predicted and measured,
plus the same error with the overhead calibrated on V3-Large 1.0 (measured - sum of its layers)
instead of the near-empty model.

    .venv/bin/python bench/lut_accuracy.py --runtimes eager onnxruntime --resolution 128 --out runs/lut-bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from mnv3.deploy.records import Machine, load_average
from mnv3.models import build_network, build_spec
from mnv3.search import random_spec
from mnv3.search.lut import LatencyTable, Measurer, Target, TimingPlan, build_table, predict

WIDTHS = ("035", "050", "075", "100", "125")
REFERENCE = "mobilenetv3_large_100"


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (scipy.stats.kendalltau when installed, else the O(n^2) count)."""
    try:
        from scipy.stats import kendalltau

        return float(kendalltau(a, b).statistic)
    except ImportError:
        pass
    conc = disc = ta = tb = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            x, y = (a[i] > a[j]) - (a[i] < a[j]), (b[i] > b[j]) - (b[i] < b[j])
            if x == 0 and y == 0:
                continue
            if x == 0:
                ta += 1
            elif y == 0:
                tb += 1
            elif x == y:
                conc += 1
            else:
                disc += 1
    return (conc - disc) / (((conc + disc + ta) * (conc + disc + tb)) ** 0.5 or 1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnxruntime"])
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--random", type=int, default=20, help="random specs (seeds 0..N-1)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/lut-bench", help="folder for the tables (lut-RUNTIME.db) and results.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [build_spec(f"mobilenetv3_{fam}_{w}") for fam in ("large", "small") for w in WIDTHS]
    specs += [random_spec(seed) for seed in range(args.random)]
    plan = TimingPlan(warmup=args.warmup, runs=args.runs, repeats=args.repeats)
    machine = Machine.detect()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    log(f"machine: {machine.line()}")
    results: dict = {"machine": machine.line(), "resolution": args.resolution, "threads": args.threads, "runtimes": {}}
    for rt in args.runtimes:
        t0 = time.time()
        target = Target.here(rt, args.threads)
        measurer = Measurer(rt, args.threads, plan)
        with LatencyTable(out / f"lut-{rt}.db", target, create=True) as table:
            built = build_table(table, specs, args.resolution, measurer, log=log)
            t_build = time.time() - t0
            preds = [predict(table, s, args.resolution) for s in specs]
            load_before = load_average()
            measured = measurer.measure_networks([build_network(s) for s in specs], args.resolution)
            load_after = load_average()
            n_entries = len(table)
        rows = [
            {"model": s.name, "predicted_ms": pr.total_ms, "layers_ms": pr.layers_ms, "overhead_ms": pr.overhead_ms, "measured_ms": m.median_ms,
             "measured_p10_ms": m.p10_ms, "measured_p90_ms": m.p90_ms, "measured_min_ms": m.min_ms,
             # the same sum over the fastest call of each layer / of the overhead, against the fastest whole-network call
             "predicted_min_ms": sum(la.timing.min_ms - pr.overhead.min_ms for la in pr.layers) + pr.overhead.min_ms}
            for s, pr, m in zip(specs, preds, measured, strict=True)
        ]
        ref = next(r for r in rows if r["model"] == REFERENCE)
        calibrated = ref["measured_ms"] - ref["layers_ms"]
        err = [(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
        err_cal = [(r["layers_ms"] + calibrated - r["measured_ms"]) / r["measured_ms"] for r in rows if r["model"] != REFERENCE]
        err_min = [(r["predicted_min_ms"] - r["measured_min_ms"]) / r["measured_min_ms"] for r in rows]
        summary = {
            "target": target.describe(),
            "networks": len(rows),
            "entries": n_entries,
            "measured_now": built,
            "build_and_predict_s": round(t_build, 1),
            "mare": statistics.fmean(abs(e) for e in err),
            "median_signed_error": statistics.median(err),
            "max_abs_error": max(abs(e) for e in err),
            "kendall_tau": kendall_tau([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]),
            "calibrated_overhead_ms": calibrated,
            "mare_calibrated": statistics.fmean(abs(e) for e in err_cal),
            "load_avg_before_after": [load_before[0] if load_before else None, load_after[0] if load_after else None],
            "mare_min": statistics.fmean(abs(e) for e in err_min),
            "median_signed_error_min": statistics.median(err_min),
            "kendall_tau_min": kendall_tau([r["predicted_min_ms"] for r in rows], [r["measured_min_ms"] for r in rows]),
            "rows": rows,
        }
        results["runtimes"][rt] = summary
        log(
            f"{rt}: {len(rows)} networks, MARE {100 * summary['mare']:.1f} %, median signed {100 * summary['median_signed_error']:+.1f} %, "
            f"tau {summary['kendall_tau']:.3f}; overhead calibrated on {REFERENCE}: MARE {100 * summary['mare_calibrated']:.1f} % "
            f"; fastest calls: MARE {100 * summary['mare_min']:.1f} %, tau {summary['kendall_tau_min']:.3f} ({time.time() - t0:.0f} s)"
        )
        for r in rows:
            log(f"  {r['model']:<40} predicted {r['predicted_ms']:8.3f}  measured {r['measured_ms']:8.3f} ms (fastest {r['predicted_min_ms']:.3f} / {r['measured_min_ms']:.3f})")
        (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
