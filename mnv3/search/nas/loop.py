"""The platform-aware NAS loop (paper §4.1, MnasNet arXiv 1807.11626 §3): sample, score ACC x (LAT / TAR)^w, learn, checkpoint.

Each sample's latency is the latency table's prediction (:mod:`mnv3.search.lut`); its accuracy a short
proxy training from scratch through the engine's Trainer, scored on a held-out part of the TRAINING
set (NetAdapt's :func:`~mnv3.search.netadapt.executors.finetune`, run by the same executors). The
state (samples, strategy, random streams) is written atomically after every finished batch of samples
(every sample with the default batch of 1), so a killed search resumes with the same result.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mnv3.search.lut import LatencyTable, Measurer, predict
from mnv3.search.nas.baselines import RandomSearch, RegularizedEvolution, Strategy
from mnv3.search.nas.controller import ControllerSettings, ControllerStrategy
from mnv3.search.nas.space import SearchSpace, SpaceOptions
from mnv3.search.netadapt.executors import Executor, Job, LocalExecutor, finetune
from mnv3.search.netadapt.loop import LatencyTarget
from mnv3.spec.serialize import spec_to_dict, spec_to_yaml
from mnv3.spec.types import Family, ModelSpec
from mnv3.train.config import TrainConfig
from mnv3.utils.atomic import atomic_save_figure, atomic_write_bytes, atomic_write_text

STATE_FORMAT = "mnv3.nas/1"
STRATEGIES = ("controller", "random", "evolution")
STATE_FILE, SAMPLES_FILE, BEST_FILE, PLOT_FILE = "state.pt", "samples.jsonl", "best_spec.yaml", "pareto.png"
DEFAULT_W = {Family.LARGE: -0.07, Family.SMALL: -0.15, Family.MNASNET: -0.07}  # §4.1: -0.07 (MnasNet), -0.15 for small models
REFERENCE_WIDTHS = (0.75, 1.0, 1.25)


def reward(accuracy: float, latency_ms: float, target_ms: float, w: float) -> float:
    """MnasNet's soft-constrained objective ACC(m) x (LAT(m) / TAR)^w (§4.1; arXiv 1807.11626 Eq. 2)."""
    if latency_ms <= 0 or target_ms <= 0:
        raise ValueError(f"latency and target must be positive, got {latency_ms} and {target_ms}")
    return accuracy * (latency_ms / target_ms) ** w


def default_w(spec: ModelSpec) -> float:
    """The paper's w for the seed's family: -0.07 for Large (MnasNet's), -0.15 for Small (§4.1)."""
    fam = spec.origin.family if spec.origin is not None else Family.LARGE
    return DEFAULT_W[fam]


@dataclass(frozen=True)
class NASSettings:
    """The search's options (§4.1): target, w, budget (samples, proxy steps), strategy and its knobs, resolution."""

    target: str  # "1.5ms", or relative to the seed's prediction: "0.9x"
    w: float
    samples: int
    proxy_steps: int
    strategy: str
    resolution: int
    space: str = "mobilenetv3"
    batch: int = 1  # samples per strategy step (and per executor map)
    population: int = 16  # evolution
    tournament: int = 4  # evolution
    seed: int = 0
    bn_batches: int = 20  # BN statistics recomputed before scoring: a short proxy run leaves them near their init
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def __post_init__(self) -> None:
        LatencyTarget.parse(self.target)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.w > 0 or not math.isfinite(self.w):
            raise ValueError(f"--w must be <= 0 (a latency penalty: -0.07 Large, -0.15 Small, §4.1), got {self.w}")
        if self.bn_batches < 0:
            raise ValueError(f"--bn-batches must be >= 0, got {self.bn_batches}")
        if self.samples < 1 or self.proxy_steps < 0 or self.batch < 1 or self.resolution < 1:
            raise ValueError(f"need --samples >= 1, --proxy-steps >= 0, --batch >= 1, --resolution >= 1; got {self.samples}, {self.proxy_steps}, {self.batch}, {self.resolution}")
        if self.strategy == "evolution" and (self.population < 2 or not 1 <= self.tournament <= self.population):
            raise ValueError(f"evolution needs --population >= 2 and 1 <= --tournament <= population, got {self.population} and {self.tournament}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class NASResult:
    """Where a search ended: its best spec and sample, every sample, the output files."""

    best_spec: ModelSpec
    best: dict[str, Any]
    samples: list[dict[str, Any]]
    target_ms: float
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def make_strategy(settings: NASSettings, sizes: Sequence[int]) -> Strategy:
    """The strategy named in ``settings``: the controller, random search or regularized evolution."""
    if settings.strategy == "controller":
        return ControllerStrategy(sizes, settings.seed, settings.controller)
    if settings.strategy == "random":
        return RandomSearch(sizes, settings.seed)
    return RegularizedEvolution(sizes, settings.seed, settings.population, settings.tournament)


class NAS:
    """One search: seed spec (its classes and input channels set), proxy-training config, latency table, settings, output folder."""

    def __init__(
        self,
        seed: ModelSpec,
        train_config: TrainConfig,
        table: LatencyTable,
        settings: NASSettings,
        out_dir: str | Path,
        *,
        options: SpaceOptions | None = None,
        executor: Executor | None = None,
        measurer: Measurer | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool = False,
    ) -> None:
        if train_config.val_split <= 0:
            raise ValueError("NAS scores samples on a held-out part of the TRAINING set: set val_split > 0 (never the test split)")
        self.space = SearchSpace(seed, options, settings.space)
        self.seed, self.table, self.settings = seed, table, settings
        self.cfg = dataclasses.replace(train_config, resolution=settings.resolution)
        self.out = Path(out_dir)
        self.executor: Executor = executor or LocalExecutor()
        self.measurer = measurer
        self.log = log or (lambda msg: None)
        self.progress = progress
        self.latency: Callable[[ModelSpec], float] = functools.lru_cache(maxsize=None)(self._predict)

    # ---- latency, checks

    def _predict(self, spec: ModelSpec) -> float:
        """The LUT-predicted latency of ``spec`` at the search's resolution (missing entries measured with the measurer)."""
        return predict(self.table, spec, self.settings.resolution, self.measurer).total_ms

    def check(self) -> tuple[float, float, float]:
        """(seed, target, fastest point) latencies in ms; a one-line ValueError when no point of the space can meet the target."""
        seed_ms = self.latency(self.seed)
        target_ms = LatencyTarget.parse(self.settings.target).ms(seed_ms)
        fastest = self.space.decode(self.space.cheapest())
        fastest_ms = self.latency(fastest)
        if target_ms < fastest_ms:
            raise ValueError(
                f"target {self.settings.target} ({target_ms:.3f} ms) is out of reach: the fastest point of the space "
                f"(every choice at its cheapest) predicts {fastest_ms:.3f} ms (seed {self.seed.name}: {seed_ms:.3f} ms)"
            )
        return seed_ms, target_ms, fastest_ms

    def references(self) -> list[dict[str, Any]]:
        """The seed family's width-multiplier networks (0.75 / 1.0 / 1.25, Table 9) with their predicted latency (accuracy not measured)."""
        from mnv3.models.registry import build_spec

        o = self.seed.origin
        if o is None or o.family not in (Family.LARGE, Family.SMALL):
            return []
        conv = {f.name: getattr(self.seed.conventions, f.name) for f in dataclasses.fields(self.seed.conventions)}
        out = []
        for w in REFERENCE_WIDTHS:
            spec = build_spec(o.model, num_classes=self.seed.num_classes, in_chans=self.seed.in_chans, width=w, **conv)
            out.append({"width": w, "name": spec.name, "latency_ms": self.latency(spec), "accuracy": None})
        return out

    # ---- state

    def _save(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.out / STATE_FILE, buf.getvalue())

    def _load(self) -> dict[str, Any]:
        state = torch.load(self.out / STATE_FILE, map_location="cpu", weights_only=False)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{self.out / STATE_FILE} is not a {STATE_FORMAT} search state")
        for what, saved, now in (("settings", state["settings"], self.settings.to_dict()), ("space", state["options"], self.space.options.to_dict())):
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            if diff:
                raise ValueError(f"{self.out} was searched with {what} {diff[0]}={saved.get(diff[0])!r}, not {now.get(diff[0])!r}; resume with the same options or use another -o")
        if state["config"] != self.cfg.to_dict() or state["seed_spec"] != spec_to_dict(self.seed):
            raise ValueError(f"{self.out} was searched with another seed network or proxy-training configuration; resume with the same options or use another -o")
        return state

    def start(self) -> dict[str, Any]:
        """The empty state: settings, latencies of the seed, target, fastest point and the width references."""
        seed_ms, target_ms, fastest_ms = self.check()
        self.log(f"seed {self.seed.name}: predicted {seed_ms:.3f} ms; target {target_ms:.3f} ms; fastest point {fastest_ms:.3f} ms; space {self.space.size():.3g} points")
        return {
            "format": STATE_FORMAT, "settings": self.settings.to_dict(), "options": self.space.options.to_dict(), "config": self.cfg.to_dict(),
            "seed_spec": spec_to_dict(self.seed), "seed_latency_ms": seed_ms, "target_ms": target_ms, "fastest_ms": fastest_ms,
            "references": self.references(), "samples": [], "strategy": None, "classes": [],
        }  # fmt: skip

    # ---- scoring

    def score(self, proposals: Sequence[list[int]], first: int, target_ms: float, done: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Latency, size and proxy accuracy of each proposal (one executor map for those not scored before), as sample records."""
        from mnv3.analysis.profiler import count_params, profile_model
        from mnv3.models.registry import build_network

        seen = {r["name"]: r for r in done}  # a network's name is its blocks' digest
        records: list[dict[str, Any]] = []
        jobs: list[Job] = []
        for i, choices in enumerate(proposals):
            spec = self.space.decode(choices)
            t0 = time.perf_counter()
            lat = self.latency(spec)
            key = spec.name
            rec: dict[str, Any] = {"index": first + i, "choices": list(choices), "stages": self.space.describe(choices), "name": spec.name, "latency_ms": lat}
            if key in seen:  # the same network again: its score is reused, not retrained
                rec.update({k: seen[key].get(k) for k in ("params", "madds", "accuracy")}, cached=True)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.cfg.seed)  # a network's initial weights depend on its spec only
                    net = build_network(spec)
                rec.update(params=count_params(net), madds=profile_model(net, self.settings.resolution).madds, cached=False)
                seen[key] = rec
                state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                jobs.append(Job(f"s{first + i}", spec_to_dict(spec), state, self.cfg.to_dict(), self.settings.proxy_steps, self.settings.bn_batches))
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
        results = {r.tag: r for r in self.executor.map(finetune, jobs)} if jobs else {}
        for rec in records:
            r = results.get(f"s{rec['index']}")
            if r is not None:
                rec.update(accuracy=r.accuracy, classes=r.classes)
                rec["seconds"] += r.seconds
        for rec in records:
            if rec.get("accuracy") is None:  # cached from a proposal of this same batch
                rec["accuracy"] = seen[rec["name"]]["accuracy"]
            rec["reward"] = reward(rec["accuracy"], rec["latency_ms"], target_ms, self.settings.w)
        return records

    # ---- the loop

    def run(self, *, resume: bool = False) -> NASResult:
        """Sample until ``samples`` are scored (continuing the state in the output folder with ``resume``)."""
        s = self.settings
        path = self.out / STATE_FILE
        if path.exists() and not resume:
            raise ValueError(f"{self.out} already holds a NAS search ({STATE_FILE}); continue it with --resume, or choose another -o")
        strategy = make_strategy(s, self.space.sizes)
        if resume and path.exists():
            state = self._load()
            if state["strategy"] is not None:
                strategy.load_state_dict(state["strategy"])
            self.log(f"resumed {self.out} after {len(state['samples'])} sample(s)")
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            state = self.start()
            self._save(state)
        samples: list[dict[str, Any]] = state["samples"]
        bar = _bar(s.samples, len(samples), self.progress)
        try:
            while len(samples) < s.samples:
                history = [(r["choices"], r["reward"]) for r in samples]
                proposals = strategy.propose(min(s.batch, s.samples - len(samples)), history)
                records = self.score(proposals, len(samples), state["target_ms"], samples)
                update = strategy.observe([(r["choices"], r["reward"]) for r in records], history)
                for r in records:
                    r["strategy"] = {k: float(v) for k, v in update.items()}
                    state["classes"] = r.pop("classes", None) or state["classes"]
                samples += records
                state["strategy"] = strategy.state_dict()
                self._save(state)
                self.write_samples(state)
                best = max(samples, key=lambda r: r["reward"])
                if bar is not None:
                    bar.update(len(records))
                    bar.set_postfix_str(f"best reward {best['reward']:.4f} ({best['latency_ms']:.3f} ms, {100 * best['accuracy']:.1f} %)")
                for r in records:
                    self.log(f"sample {r['index'] + 1}/{s.samples}: {r['name']} {r['latency_ms']:.3f} ms, held-out {100 * r['accuracy']:.2f} %, reward {r['reward']:.4f}")
        finally:
            if bar is not None:
                bar.close()
        files = self.write_outputs(state)
        return NASResult(self.best_spec(state), max(samples, key=lambda r: r["reward"]), samples, state["target_ms"], self.out, files)

    # ---- outputs

    def best_spec(self, state: dict[str, Any]) -> ModelSpec:
        """The spec of the sample with the highest reward (the earliest among equals)."""
        best = max(state["samples"], key=lambda r: r["reward"])
        return self.space.decode(best["choices"])

    def write_samples(self, state: dict[str, Any]) -> list[Path]:
        """samples.jsonl and best_spec.yaml, each written atomically."""
        atomic_write_text(self.out / SAMPLES_FILE, "".join(json.dumps(r) + "\n" for r in state["samples"]))
        atomic_write_text(self.out / BEST_FILE, spec_to_yaml(self.best_spec(state)))
        return [self.out / SAMPLES_FILE, self.out / BEST_FILE]

    def write_outputs(self, state: dict[str, Any]) -> list[Path]:
        """samples.jsonl, best_spec.yaml and the Pareto figure."""
        files = self.write_samples(state)
        plot = plot_pareto(state, self.out / PLOT_FILE, self.seed.name)
        return files + ([plot] if plot is not None else [])


def _bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="mnv3 search nas", unit="sample", dynamic_ncols=True)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, accuracy) points no other point beats on both (lower latency, higher accuracy), fastest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_pareto(state: dict[str, Any], out: str | Path, seed_name: str = "") -> Path | None:
    """Held-out accuracy against predicted latency for every sample, the Pareto front, the target and the seed's width points (§4.1)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = state["samples"]
    pts = [(r["latency_ms"], 100 * r["accuracy"]) for r in samples]
    fig, ax = plt.subplots(figsize=(7, 5))
    if pts:
        sc = ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=range(len(pts)), cmap="viridis", s=16, alpha=0.7, label="samples")
        fig.colorbar(sc, ax=ax, label="sample")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", color="C3", lw=1.5, label="Pareto front")
        best = max(range(len(samples)), key=lambda i: samples[i]["reward"])
        ax.scatter([pts[best][0]], [pts[best][1]], marker="*", s=160, color="C1", zorder=3, label="best reward")
    ax.axvline(state["target_ms"], color="red", ls="--", lw=1, label=f"target {state['target_ms']:.3f} ms")
    for ref in state.get("references", []):
        if ref.get("accuracy") is not None:
            ax.scatter([ref["latency_ms"]], [100 * ref["accuracy"]], marker="s", color="gray", zorder=3)
        ax.axvline(ref["latency_ms"], color="gray", ls=":", lw=1)
        ax.annotate(f"{ref['width']:g}x", (ref["latency_ms"], 1.0), xycoords=("data", "axes fraction"), fontsize=7, color="gray", ha="center", va="top")
    strategy = state["settings"]["strategy"]
    ax.set(xlabel="LUT-predicted latency (ms)", ylabel="held-out accuracy (%)", title=f"NAS (§4.1) around {seed_name}: {len(samples)} samples, {strategy}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="dotted: seed width multipliers (latency only)" if state.get("references") else None, title_fontsize=7)
    fig.tight_layout()
    try:
        return atomic_save_figure(fig, out)
    finally:
        plt.close(fig)

