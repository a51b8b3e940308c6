"""Latency harness: batch-1 latency and batched throughput, several runtimes and models interleaved in one run.

Honest measurement on a shared machine (peer-latency note §7: runs differ by 14 % in the median
and up to 2x): every case is built first, warmed up, then timed in short chunks that alternate
between the cases (order reversed every round), so mnv3 and its peer see the same machine state.
Thread counts are pinned in every runtime. Each repeat yields one :class:`LatencyRecord` per case;
ratios are formed within a repeat, then summarised across repeats. A resolution is a side (square
input) or (height, width) for dense tasks; every output of the graph is fetched (a detector has two).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mnv3.deploy.predictor import Predictor, TorchPredictor
from mnv3.deploy.records import LatencyRecord, Machine, load_average
from mnv3.deploy.runtimes import FILE_SUFFIX, RUNTIME_FORMAT, Runtime, runtime_version

PRECISIONS = ("fp32", "int8")

Resolution = int | tuple[int, int]


def input_size(resolution: Resolution) -> tuple[int, int]:
    """(height, width) of a resolution given as one side (square) or as (height, width)."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h < 1 or w < 1:
        raise ValueError(f"a resolution is positive, got {h}x{w}")
    return int(h), int(w)


def resolution_text(resolution: Resolution) -> str:
    """``224`` for a square input, ``512x1024`` otherwise (file names, table headers)."""
    h, w = input_size(resolution)
    return str(h) if h == w else f"{h}x{w}"


def fetch_all(predictor: Predictor) -> Callable[[Any], Any]:
    """The call that runs a fed input and fetches every output (``run_outputs``: a raw detector has two), else ``run``."""
    return getattr(predictor, "run_outputs", predictor.run)


class Unsupported(ValueError):
    """A (runtime, precision) combination the harness does not measure, with the reason."""


@dataclass
class Case:
    """One thing to time: a loaded predictor and its already-converted input."""

    source: str
    model: str
    runtime: Runtime
    precision: str
    threads: int
    batch: int
    resolution: Resolution
    in_chans: int
    predictor: Predictor
    fed: Any
    build_s: float
    artifact_bytes: int | None = None
    notes: str = ""
    samples: list[list[float]] = field(default_factory=list)
    memory: list[tuple[float | None, float | None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.source} {self.runtime.value} {self.precision} {self.threads}T b{self.batch}"


# --- memory: the kernel's resident-set high-water mark, reset per measurement ----------------------


def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False where unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- building cases -----------------------------------------------------------------------------------


def build_case(
    model: nn.Module,
    *,
    source: str,
    model_name: str,
    runtime: Runtime | str,
    precision: str,
    threads: int,
    batch: int,
    resolution: Resolution,
    workdir: Path,
    calibration: torch.Tensor | None = None,
    mnv3_flow: bool = True,
    artifacts: dict[tuple, Path] | None = None,
) -> Case:
    """Export / compile ``model`` for ``runtime`` at ``precision`` and load it with ``threads`` threads.

    ``artifacts`` caches exported files across cases (ONNX files have a dynamic batch and serve
    every batch size). Raises :class:`Unsupported` for combinations that are not measured.
    """
    from mnv3.deploy.export import build_artifact, load_predictor

    runtime = Runtime(runtime)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    spec = getattr(model, "spec", None)
    in_chans = spec.in_chans if spec is not None else 3
    size = input_size(resolution)
    x = torch.randn(batch, in_chans, *size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    artifact_bytes = None
    notes = ""
    model = model.eval()
    if runtime in (Runtime.EAGER, Runtime.COMPILE):
        if precision != "fp32":
            raise Unsupported(
                f"{runtime.value} int8 is PT2E's reference (simulated) quantization, not a deployment path; not timed"
            )
        torch.set_num_threads(threads)
        module: Any = model
        if runtime is Runtime.COMPILE:
            module = torch.compile(model)
            with torch.inference_mode():
                module(x)  # compile now, so build_s includes it and the timed calls do not
        predictor: Predictor = TorchPredictor(module, threads)
    else:
        fmt = RUNTIME_FORMAT[runtime]
        assert fmt is not None
        if precision == "int8" and calibration is None:
            calibration = torch.randn(16, in_chans, *size, generator=torch.Generator().manual_seed(2))
            notes = "int8 calibrated on random inputs"
        batch_key = 0 if runtime is Runtime.ONNXRUNTIME else batch
        key = (source, model_name, fmt, precision, size, batch_key, mnv3_flow)
        path = (artifacts or {}).get(key)
        if path is None:
            path = Path(workdir) / f"{source}-{model_name}-{precision}-r{resolution_text(size)}-b{batch_key}{FILE_SUFFIX[fmt]}"
            example = x[:1] if runtime is Runtime.ONNXRUNTIME else x
            build_artifact(
                model,
                fmt,
                path,
                example,
                int8=precision == "int8",
                calibration=calibration,
                mnv3_flow=mnv3_flow,
                workdir=Path(workdir),
            )
            if artifacts is not None:
                artifacts[key] = path
        artifact_bytes = path.stat().st_size
        predictor = load_predictor(fmt, path, threads)
    predictor.activate()
    fed = predictor.feed(x)
    fetch_all(predictor)(fed)
    build_s = time.perf_counter() - t0
    return Case(
        source,
        model_name,
        runtime,
        precision,
        threads,
        batch,
        resolution,
        in_chans,
        predictor,
        fed,
        build_s,
        artifact_bytes,
        notes,
    )


@dataclass(frozen=True)
class Contender:
    """A network to time: whose it is (``mnv3`` or a peer), its name there, and whether mnv3's export flow applies."""

    source: str
    name: str
    model: nn.Module
    mnv3_flow: bool


def build_cases(
    contenders: Sequence[Contender],
    *,
    runtimes: Sequence[Runtime | str],
    precisions: Sequence[str],
    threads: Sequence[int],
    batches: Sequence[int] = (1,),
    resolution: Resolution,
    workdir: Path,
    calibration: torch.Tensor | None = None,
    artifacts: dict[tuple, Path] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Case]:
    """Every (runtime, precision, threads, batch, contender) case that is measured, built in that order.

    Combinations :func:`build_case` does not measure are skipped with a note to ``log``; ``artifacts``
    (filled here when given) shares exported files between cases.
    """
    artifacts = {} if artifacts is None else artifacts
    cases = []
    for runtime in runtimes:
        for precision in precisions:
            for th in threads:
                for batch in batches:
                    for c in contenders:
                        try:
                            case = build_case(
                                c.model,
                                source=c.source,
                                model_name=c.name,
                                runtime=runtime,
                                precision=precision,
                                threads=th,
                                batch=batch,
                                resolution=resolution,
                                workdir=workdir,
                                calibration=calibration,
                                mnv3_flow=c.mnv3_flow,
                                artifacts=artifacts,
                            )
                        except Unsupported as e:
                            if log is not None:
                                log(f"note: {e}")
                            continue
                        cases.append(case)
                        if log is not None:
                            log(f"built {case.label} in {case.build_s:.1f} s")
    return cases


# --- timing ------------------------------------------------------------------------------------------


def _time_calls(case: Case, n: int) -> list[float]:
    """``n`` timed calls in milliseconds; every output is fetched (``run`` alone would give a detector's first)."""
    run, fed = fetch_all(case.predictor), case.fed
    out = []
    for _ in range(n):
        t = time.perf_counter_ns()
        run(fed)
        out.append((time.perf_counter_ns() - t) / 1e6)
    return out


def measure(
    cases: Sequence[Case],
    *,
    warmup: int = 10,
    runs: int = 50,
    repeats: int = 1,
    chunk: int = 10,
    progress: Callable[[str], None] | None = None,
) -> list[LatencyRecord]:
    """Time every case ``runs`` times per repeat, interleaved in chunks; one record per case and repeat."""
    if runs < 1 or warmup < 0 or repeats < 1 or chunk < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, repeats >= 1, chunk >= 1 (got {runs}, {warmup}, {repeats}, {chunk})")
    machine = Machine.detect()
    from mnv3 import __version__

    records: list[LatencyRecord] = []
    for c in cases:
        c.predictor.activate()
        for _ in range(warmup):
            fetch_all(c.predictor)(c.fed)
    for rep in range(repeats):
        times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        mem: dict[int, tuple[float | None, float | None]] = {}
        rounds = math.ceil(runs / chunk)
        for r in range(rounds):
            order = list(range(len(cases))) if r % 2 == 0 else list(reversed(range(len(cases))))
            for i in order:
                c = cases[i]
                n = min(chunk, runs - len(times[i]))
                if n <= 0:
                    continue
                c.predictor.activate()
                fetch_all(c.predictor)(c.fed)  # one untimed call: re-warm caches after the other cases
                if i not in mem:
                    before = _status_mb("VmRSS")
                    ok = _reset_peak_rss()
                    times[i] += _time_calls(c, n)
                    peak = _status_mb("VmHWM") if ok else None
                    mem[i] = (peak, None if peak is None or before is None else max(0.0, peak - before))
                else:
                    times[i] += _time_calls(c, n)
        load = load_average()
        for i, c in enumerate(cases):
            t = np.asarray(times[i])
            med = float(np.median(t))
            height, width = input_size(c.resolution)
            c.samples.append(times[i])
            c.memory.append(mem[i])
            records.append(
                LatencyRecord(
                    model=c.model,
                    source=c.source,
                    runtime=c.runtime.value,
                    runtime_version=runtime_version(c.runtime),
                    precision=c.precision,
                    threads=c.threads,
                    batch=c.batch,
                    resolution=height,
                    width=width if width != height else None,
                    in_chans=c.in_chans,
                    warmup=warmup,
                    runs=len(t),
                    median_ms=med,
                    p90_ms=float(np.percentile(t, 90)),
                    min_ms=float(t.min()),
                    max_ms=float(t.max()),
                    mean_ms=float(t.mean()),
                    images_per_s=c.batch * 1000.0 / med,
                    machine=machine,
                    build_s=c.build_s,
                    artifact_bytes=c.artifact_bytes,
                    peak_rss_mb=mem[i][0],
                    rss_increase_mb=mem[i][1],
                    repeat=rep,
                    load_avg=load,
                    torch_version=torch.__version__,
                    mnv3_version=__version__,
                    notes=c.notes,
                )
            )
        if progress is not None:
            progress(f"repeat {rep + 1}/{repeats} done (load average {load[0] if load else float('nan'):.2f})")
    return records


# --- summaries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A case summarised over repeats: median of the per-repeat medians, and their spread."""

    source: str
    model: str
    runtime: str
    precision: str
    threads: int
    batch: int
    median_ms: float
    repeat_medians: tuple[float, ...]
    p90_ms: float
    min_ms: float
    max_ms: float
    images_per_s: float
    peak_rss_mb: float | None
    rss_increase_mb: float | None


def summarize(records: Sequence[LatencyRecord]) -> list[Row]:
    """One row per case (same key), in first-seen order."""
    groups: dict[tuple, list[LatencyRecord]] = {}
    for r in records:
        groups.setdefault(r.key(), []).append(r)
    rows = []
    for rs in groups.values():
        meds = tuple(r.median_ms for r in rs)
        med = statistics.median(meds)
        rows.append(
            Row(
                rs[0].source,
                rs[0].model,
                rs[0].runtime,
                rs[0].precision,
                rs[0].threads,
                rs[0].batch,
                med,
                meds,
                statistics.median(r.p90_ms for r in rs),
                min(r.min_ms for r in rs),
                max(r.max_ms for r in rs),
                rs[0].batch * 1000.0 / med,
                max((r.peak_rss_mb for r in rs if r.peak_rss_mb is not None), default=None),
                max((r.rss_increase_mb for r in rs if r.rss_increase_mb is not None), default=None),
            )
        )
    return rows


@dataclass(frozen=True)
class Ratio:
    """mnv3 time / peer time; below 1.0 means mnv3 is faster. ``per_repeat`` are ratios within each repeat."""

    what: str
    precision: str
    threads: int
    batch: int
    mnv3: str
    peer: str
    mnv3_ms: float
    peer_ms: float
    per_repeat: tuple[float, ...]

    @property
    def ratio(self) -> float:
        return statistics.median(self.per_repeat)


def _by_repeat(records: Sequence[LatencyRecord]) -> dict[int, list[LatencyRecord]]:
    out: dict[int, list[LatencyRecord]] = {}
    for r in records:
        out.setdefault(r.repeat, []).append(r)
    return out


def ratios(records: Sequence[LatencyRecord], peer: str) -> list[Ratio]:
    """Same-runtime ratios (mnv3 vs ``peer`` through each runtime) and fastest-vs-fastest ratios per precision."""
    out: list[Ratio] = []
    reps = _by_repeat(records)
    keys = sorted({(r.runtime, r.precision, r.threads, r.batch) for r in records if r.source == "mnv3"})
    for rt, prec, th, b in keys:
        per, m_ms, p_ms = [], [], []
        for rs in reps.values():
            m = [r for r in rs if (r.source, r.runtime, r.precision, r.threads, r.batch) == ("mnv3", rt, prec, th, b)]
            p = [r for r in rs if (r.source, r.runtime, r.precision, r.threads, r.batch) == (peer, rt, prec, th, b)]
            if m and p:
                per.append(m[0].median_ms / p[0].median_ms)
                m_ms.append(m[0].median_ms)
                p_ms.append(p[0].median_ms)
        if per:
            out.append(Ratio("same runtime", prec, th, b, rt, rt, statistics.median(m_ms), statistics.median(p_ms), tuple(per)))
    for prec, th, b in sorted({(r.precision, r.threads, r.batch) for r in records}):
        per, m_ms, p_ms, m_names, p_names = [], [], [], [], []
        for rs in reps.values():
            m = [r for r in rs if r.source == "mnv3" and (r.precision, r.threads, r.batch) == (prec, th, b)]
            p = [r for r in rs if r.source == peer and (r.precision, r.threads, r.batch) == (prec, th, b)]
            if m and p:
                bm, bp = min(m, key=lambda r: r.median_ms), min(p, key=lambda r: r.median_ms)
                per.append(bm.median_ms / bp.median_ms)
                m_ms.append(bm.median_ms)
                p_ms.append(bp.median_ms)
                m_names.append(bm.runtime)
                p_names.append(bp.runtime)
        if per:
            mode = statistics.mode
            out.append(
                Ratio(
                    "fastest vs fastest",
                    prec,
                    th,
                    b,
                    mode(m_names),
                    mode(p_names),
                    statistics.median(m_ms),
                    statistics.median(p_ms),
                    tuple(per),
                )
            )
    return out


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of summarised rows."""
    head = f"{'source':<12} {'runtime':<12} {'prec':<5} {'thr':>3} {'batch':>5} {'median ms':>10} {'p90':>8} {'min-max':>17} {'img/s':>8} {'peak MB':>8} {'+MB':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mm = f"{r.min_ms:.2f}-{r.max_ms:.2f}"
        peak = f"{r.peak_rss_mb:.0f}" if r.peak_rss_mb is not None else "n/a"
        inc = f"{r.rss_increase_mb:.1f}" if r.rss_increase_mb is not None else "n/a"
        lines.append(
            f"{r.source:<12} {r.runtime:<12} {r.precision:<5} {r.threads:>3} {r.batch:>5} {r.median_ms:>10.3f} {r.p90_ms:>8.3f} {mm:>17} {r.images_per_s:>8.1f} {peak:>8} {inc:>6}"
        )
    return "\n".join(lines)


def format_ratios(rs: Sequence[Ratio], peer: str) -> str:
    lines = []
    for r in rs:
        spread = ", ".join(f"{x:.2f}" for x in r.per_repeat)
        lines.append(
            f"{r.what:<31} {r.precision:<5} {r.threads}T b{r.batch}: mnv3 {r.mnv3} {r.mnv3_ms:.3f} ms / {peer} {r.peer} {r.peer_ms:.3f} ms "
            f"= {r.ratio:.3f} (per repeat: {spread})"
        )
    return "\n".join(lines)
