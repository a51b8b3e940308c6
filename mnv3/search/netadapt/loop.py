"""The NetAdapt loop as MobileNetV3 runs it (paper §4.2), checkpointed after every iteration.

1. Start from the seed network (its predicted latency L).
2. Propose networks, each cutting the LUT-predicted latency by at least delta = ``delta`` * |L|
   (optionally decayed by ``delta_decay`` per iteration, as in NetAdapt, arXiv 1804.03230).
3. Initialise each from the current weights, truncated to the kept channels.
4. Fine-tune each for T steps and score it on a held-out part of the training set.
5. Keep the one with the largest dAcc / |dLatency| (``criterion="accuracy"``: the smallest accuracy
   drop, original NetAdapt); repeat until the predicted latency reaches the target.

The state (current spec, weights, history, random streams, iteration) is written atomically after
every iteration, so a search killed at any point resumes from its last finished iteration and ends
with the same result as an uninterrupted one (deterministic mode).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnv3.search.lut import LatencyTable, Measurer, predict
from mnv3.search.netadapt.executors import Executor, Job, JobResult, LocalExecutor, finetune
from mnv3.search.netadapt.proposals import (
    Proposal,
    Structure,
    check_structure,
    floor_spec,
    make_proposals,
    registered_structure,
    structure,
)
from mnv3.search.netadapt.truncate import truncate_state
from mnv3.spec.serialize import spec_from_dict, spec_to_dict, spec_to_yaml
from mnv3.spec.types import ModelSpec
from mnv3.train.config import TrainConfig, apply_overrides
from mnv3.utils.atomic import atomic_save_figure, atomic_write_bytes, atomic_write_text

STATE_FORMAT = "mnv3.netadapt/1"
CRITERIA = ("ratio", "accuracy")
STATE_FILE, HISTORY_FILE, SPEC_FILE, WEIGHTS_FILE, PLOT_FILE = "state.pt", "history.jsonl", "spec.yaml", "model.safetensors", "netadapt.png"

# Fine-tuning defaults for the short per-proposal runs (T steps); any TrainConfig field can be overridden.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.01, "lr_base_batch": None, "momentum": 0.9, "weight_decay": 1e-5, "schedule": "constant",
    "warmup_epochs": 0.0, "epochs": 1e6, "batch_size": 64, "ema_decay": None, "val_split": 0.1, "crop": "pad", "eval_interval": 10**9,
    "log_interval": 10**9, "checkpoint_interval": None, "progress": False, "tensorboard": False,
}  # fmt: skip


def finetune_config(**overrides: Any) -> TrainConfig:
    """The training config a proposal is fine-tuned with: :data:`FINETUNE_DEFAULTS` plus ``overrides``."""
    return apply_overrides(TrainConfig(), {**FINETUNE_DEFAULTS, **overrides})


_TARGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(x|ms)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class LatencyTarget:
    """The latency to reach: relative to the seed's prediction (``0.75x``) or absolute (``12ms``)."""

    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> LatencyTarget:
        """``0.75x`` or ``12ms``; anything else is a one-line error."""
        m = _TARGET.match(str(text))
        if not m or float(m.group(1)) <= 0:
            raise ValueError(f"--target must be a positive fraction of the seed's latency such as 0.75x, or milliseconds such as 12ms; got {text!r}")
        return cls(float(m.group(1)), m.group(2).lower() == "x")

    def ms(self, seed_ms: float) -> float:
        """The target in milliseconds."""
        return self.value * seed_ms if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}ms"


@dataclass(frozen=True)
class NetAdaptSettings:
    """The search's options (§4.2): target, delta and its decay, T, criterion, width step, limits."""

    target: str
    resolution: int
    delta: float = 0.01  # delta = this * |L| of the seed (paper: 0.01)
    delta_decay: float = 1.0  # delta_k = delta * decay**k (NetAdapt's schedule; 1.0: constant, as MobileNetV3 states it)
    steps: int = 3  # T fine-tuning steps per proposal (paper: 10,000)
    final_steps: int = 0  # fine-tuning of the adapted network at the end (the paper retrains it from scratch)
    criterion: str = "ratio"  # ratio: largest dAcc / |dLatency| (MobileNetV3); accuracy: smallest accuracy drop (NetAdapt)
    step: int = 8  # channels removed per width step (make_divisible's divisor)
    min_width: int = 8
    max_iterations: int | None = None
    blocks: tuple[int, ...] | None = None  # search only these blocks (1-based); None: all
    bn_batches: int = 0  # BN statistics recomputed over this many training batches before each score (0: fine-tuned as they are)

    def __post_init__(self) -> None:
        LatencyTarget.parse(self.target)
        if not 0 < self.delta < 1:
            raise ValueError(f"--delta is a fraction of the seed's latency in (0, 1), got {self.delta}")
        if not 0 < self.delta_decay <= 1:
            raise ValueError(f"--delta-decay must be in (0, 1], got {self.delta_decay}")
        if self.steps < 0 or self.final_steps < 0:
            raise ValueError(f"--steps and --final-steps must be >= 0, got {self.steps} and {self.final_steps}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"--criterion must be one of {list(CRITERIA)}, got {self.criterion!r}")
        if self.bn_batches < 0:
            raise ValueError(f"--bn-batches must be >= 0, got {self.bn_batches}")
        if self.step < 1 or self.min_width < 1:
            raise ValueError(f"--step and --min-width must be >= 1, got {self.step} and {self.min_width}")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"--max-iterations must be >= 1, got {self.max_iterations}")
        if self.resolution < 1:
            raise ValueError(f"--resolution must be >= 1, got {self.resolution}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blocks"] = list(self.blocks) if self.blocks is not None else None
        return d


@dataclass
class SearchResult:
    """Where a search ended: its adapted spec, latency, accuracy, iterations and output files."""

    spec: ModelSpec
    latency_ms: float
    accuracy: float
    seed_latency_ms: float
    target_ms: float
    iterations: int
    reached: bool
    history: list[dict[str, Any]]
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    message: str = ""


def _score(p_acc: float, p_ms: float, acc: float, ms: float, criterion: str) -> float:
    """dAcc / |dLatency| (§4.2), or the proposal's accuracy (the smallest drop, NetAdapt)."""
    if criterion == "accuracy":
        return p_acc
    return (p_acc - acc) / max(abs(p_ms - ms), 1e-12)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


class NetAdapt:
    """One search: seed network, fine-tuning config, latency table, settings, output folder and executor (§4.2)."""

    def __init__(
        self,
        model: nn.Module,
        train_config: TrainConfig,
        table: LatencyTable,
        settings: NetAdaptSettings,
        out_dir: str | Path,
        *,
        executor: Executor | None = None,
        measurer: Measurer | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        spec = getattr(model, "spec", None)
        if not isinstance(spec, ModelSpec) or spec.detection is not None or spec.segmentation is not None:
            raise ValueError("NetAdapt adapts an mnv3 classifier (a MobileNetV3 built from a spec)")
        if train_config.val_split <= 0:
            raise ValueError("NetAdapt scores proposals on a held-out part of the TRAINING set: set val_split > 0 (never the test split)")
        if settings.blocks is not None and not set(settings.blocks) <= set(range(1, len(spec.blocks) + 1)):
            raise ValueError(f"--blocks must be in 1..{len(spec.blocks)}, got {list(settings.blocks)}")
        self.model, self.spec, self.table, self.settings = model, spec, table, settings
        self.cfg = dataclasses.replace(train_config, resolution=settings.resolution)
        self.out = Path(out_dir)
        self.executor: Executor = executor or LocalExecutor()
        self.measurer = measurer
        self.log = log or (lambda msg: None)
        self._latency: dict[str, float] = {}

    # ---- latency (the LUT)

    def latency(self, spec: ModelSpec) -> float:
        """The LUT-predicted latency of ``spec`` at the search's resolution (missing entries measured when a measurer is given)."""
        key = json.dumps(spec_to_dict(spec), sort_keys=True)
        if key not in self._latency:
            self._latency[key] = predict(self.table, spec, self.settings.resolution, self.measurer).total_ms
        return self._latency[key]

    # ---- checks before any work

    def reference(self) -> Structure:
        """The residual groups every network of the search keeps: the seed's, checked against its registered network's."""
        ref = registered_structure(self.spec)
        if ref is not None:
            check_structure(self.spec, ref, f"the registered {self.spec.origin.model}")  # type: ignore[union-attr]
        return structure(self.spec)

    def check(self) -> tuple[float, float]:
        """(seed latency, target) in ms; a one-line ValueError for a target at or above the seed's latency or below reach."""
        s = self.settings
        reference = self.reference()
        seed_ms = self.latency(self.spec)
        target = LatencyTarget.parse(s.target)
        target_ms = target.ms(seed_ms)
        if target_ms >= seed_ms:
            raise ValueError(f"target {target} ({target_ms:.3f} ms) is not below the starting network's predicted latency {seed_ms:.3f} ms")
        floor = floor_spec(self.spec, reference, step=s.step, min_width=s.min_width, blocks=s.blocks)
        floor_ms = self.latency(floor)
        if target_ms < floor_ms:
            raise ValueError(
                f"target {target} ({target_ms:.3f} ms) is impossible: every searchable width at its minimum ({s.min_width}) still "
                f"predicts {floor_ms:.3f} ms (seed {seed_ms:.3f} ms)"
            )
        return seed_ms, target_ms

    # ---- state

    def _state_path(self) -> Path:
        return self.out / STATE_FILE

    def _save(self, state: dict[str, Any]) -> None:
        from mnv3.train.checkpoint import capture_rng

        state["rng"] = capture_rng()
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self._state_path(), buf.getvalue())

    def _load(self) -> dict[str, Any]:
        from mnv3.train.checkpoint import restore_rng

        state = torch.load(self._state_path(), map_location="cpu", weights_only=False)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{self._state_path()} is not a {STATE_FORMAT} search state")
        saved = state["settings"]
        now = self.settings.to_dict()
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if diff:
            k = diff[0]
            raise ValueError(f"{self.out} was searched with {k}={saved.get(k)!r}, not {now.get(k)!r}; resume with the same options or use another -o")
        if state["config"] != self._job_config(0):
            raise ValueError(f"{self.out} was searched with another fine-tuning configuration; resume with the same options or use another -o")
        restore_rng(state["rng"])
        return state

    def _job_config(self, iteration: int) -> dict[str, Any]:
        """The fine-tuning config of iteration ``iteration``'s jobs (its seed varies with the iteration)."""
        return dataclasses.replace(self.cfg, seed=self.cfg.seed + iteration).to_dict()

    # ---- the loop

    def _jobs(self, tag: str, specs: Sequence[ModelSpec], states: Sequence[dict[str, torch.Tensor]], iteration: int, steps: int) -> list[Job]:
        cfg = self._job_config(iteration)
        return [Job(f"{tag}{j}", spec_to_dict(s), st, cfg, steps, self.settings.bn_batches) for j, (s, st) in enumerate(zip(specs, states, strict=True))]

    def start(self) -> dict[str, Any]:
        """The iteration-0 state: the seed's latency, target and held-out accuracy."""
        seed_ms, target_ms = self.check()
        weights = _cpu_state(self.model)
        base = self.executor.map(finetune, self._jobs("seed", [self.spec], [weights], 0, 0))[0]
        self.log(f"seed {self.spec.name}: predicted {seed_ms:.3f} ms, held-out {100 * base.accuracy:.2f} %; target {target_ms:.3f} ms")
        return {
            "format": STATE_FORMAT, "settings": self.settings.to_dict(), "config": self._job_config(0), "iteration": 0,
            "seed_spec": spec_to_dict(self.spec), "spec": spec_to_dict(self.spec), "weights": weights, "history": [],
            "seed_latency_ms": seed_ms, "target_ms": target_ms, "latency_ms": seed_ms, "accuracy": base.accuracy,
            "seed_accuracy": base.accuracy, "classes": base.classes, "reference": [list(r) for r in structure(self.spec)], "done": False, "message": "",
            "final": None,
        }  # fmt: skip

    def iterate(self, state: dict[str, Any]) -> bool:
        """One NetAdapt iteration on ``state`` (§4.2 steps 2-5); False when no proposal can cut delta any more."""
        s, k = self.settings, int(state["iteration"])
        t0 = time.perf_counter()
        spec = spec_from_dict(state["spec"])
        reference: Structure = tuple(tuple(r) for r in state["reference"])  # type: ignore[misc]
        delta_ms = s.delta * abs(state["seed_latency_ms"]) * s.delta_decay**k
        now_ms, acc = float(state["latency_ms"]), float(state["accuracy"])
        proposals, dropped = make_proposals(spec, self.latency, delta_ms, reference=reference, step=s.step, min_width=s.min_width, blocks=s.blocks)
        if not proposals:
            return False
        states = [truncate_state(state["weights"], spec, p.spec) for p in proposals]
        results = self.executor.map(finetune, self._jobs(f"it{k + 1}-p", [p.spec for p in proposals], states, k + 1, s.steps))
        scores = [_score(r.accuracy, p.latency_ms, acc, now_ms, s.criterion) for p, r in zip(proposals, results, strict=True)]
        best = max(range(len(proposals)), key=lambda j: (scores[j], -j))
        chosen: Proposal = proposals[best]
        result: JobResult = results[best]
        record = {
            "iteration": k + 1,
            "delta_ms": delta_ms,
            "latency_ms_before": now_ms,
            "accuracy_before": acc,
            "proposals": [
                {**p.to_dict(), "accuracy": r.accuracy, "d_accuracy": r.accuracy - acc, "d_latency_ms": p.latency_ms - now_ms, "score": sc}
                for p, r, sc in zip(proposals, results, scores, strict=True)
            ],
            "dropped": [d.to_dict() for d in dropped],
            "chosen": best,
            "chosen_label": chosen.label,
            "latency_ms": chosen.latency_ms,
            "accuracy": result.accuracy,
            "widths": [[b.exp, b.out] for b in chosen.spec.blocks],
            "stem": chosen.spec.stem.out,
            "seconds": time.perf_counter() - t0,
        }
        state["history"].append(record)
        state.update(iteration=k + 1, spec=spec_to_dict(chosen.spec), weights=result.state, latency_ms=chosen.latency_ms, accuracy=result.accuracy)
        self.log(
            f"iteration {k + 1}: {len(proposals)} proposals ({len(dropped)} dropped), chose {chosen.label}: predicted "
            f"{chosen.latency_ms:.3f} ms ({chosen.latency_ms - now_ms:+.3f}), held-out {100 * result.accuracy:.2f} % ({100 * (result.accuracy - acc):+.2f})"
        )
        return True

    def run(self, *, resume: bool = False) -> SearchResult:
        """Search from the seed (or from the state in the output folder with ``resume``) until the target is reached."""
        s = self.settings
        path = self._state_path()
        if path.exists() and not resume:
            raise ValueError(f"{self.out} already holds a NetAdapt search ({STATE_FILE}); continue it with --resume, or choose another -o")
        if resume and path.exists():
            state = self._load()
            self.log(f"resumed {self.out} at iteration {state['iteration']} (predicted {state['latency_ms']:.3f} ms)")
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            state = self.start()
            self._save(state)
        while not state["done"]:
            if state["latency_ms"] <= state["target_ms"]:
                state.update(done=True, message="target reached")
            elif s.max_iterations is not None and state["iteration"] >= s.max_iterations:
                state.update(done=True, message=f"stopped after {s.max_iterations} iteration(s) (--max-iterations)")
            elif not self.iterate(state):
                state.update(done=True, message=f"no proposal can cut delta any more (every width at its minimum or no cut saves {s.delta:g} x L)")
            self._save(state)
            self.write_outputs(state)
        if s.final_steps > 0 and state["final"] is None:
            spec = spec_from_dict(state["spec"])
            r = self.executor.map(finetune, self._jobs("final", [spec], [state["weights"]], 10**6, s.final_steps))[0]
            state.update(final={"steps": s.final_steps, "accuracy_before": state["accuracy"], "accuracy": r.accuracy}, weights=r.state)
            self.log(f"final fine-tuning: {s.final_steps} steps, held-out {100 * r.accuracy:.2f} %")
            self._save(state)
        files = self.write_outputs(state)
        return self._result(state, files)

    def _result(self, state: dict[str, Any], files: list[Path]) -> SearchResult:
        final = state["final"]
        return SearchResult(
            spec_from_dict(state["spec"]), state["latency_ms"], final["accuracy"] if final else state["accuracy"], state["seed_latency_ms"],
            state["target_ms"], state["iteration"], state["latency_ms"] <= state["target_ms"], state["history"], self.out, files, state["message"],
        )  # fmt: skip

    # ---- outputs

    def adapted_spec(self, state: dict[str, Any]) -> ModelSpec:
        """The current network's spec, named after its seed (no registered origin: it is not a registered network)."""
        spec = spec_from_dict(state["spec"])
        seed = spec_from_dict(state["seed_spec"])
        name = seed.name if state["iteration"] == 0 else f"{seed.name}+netadapt{state['iteration']}"
        return spec.replace(name=name, origin=None)

    def write_outputs(self, state: dict[str, Any]) -> list[Path]:
        """Adapted spec (YAML), safetensors weights, history.jsonl and the accuracy-latency figure, each written atomically."""
        from mnv3.models.registry import build_network
        from mnv3.train.data import preprocessing_for
        from mnv3.weights.io import WeightsMeta, save_weights

        spec = self.adapted_spec(state)
        atomic_write_text(self.out / SPEC_FILE, spec_to_yaml(spec))
        net = build_network(spec)
        net.load_state_dict(state["weights"], strict=True)
        acc = state["final"]["accuracy"] if state["final"] else state["accuracy"]
        meta = WeightsMeta(
            preprocessing=preprocessing_for(self.cfg),
            categories=list(state.get("classes") or []),
            metrics={"netadapt held-out top-1": acc, "predicted latency ms": state["latency_ms"]},
            recipe={"netadapt": self.settings.to_dict(), "finetune": state["config"]},
            source=f"mnv3 search netadapt from {spec_from_dict(state['seed_spec']).name}, {state['iteration']} iteration(s)",
        )
        save_weights(net, self.out / WEIGHTS_FILE, meta)
        atomic_write_text(self.out / HISTORY_FILE, "".join(json.dumps(r) + "\n" for r in state["history"]))
        files = [self.out / SPEC_FILE, self.out / WEIGHTS_FILE, self.out / HISTORY_FILE]
        plot = plot_history(state, self.out / PLOT_FILE)
        if plot is not None:
            files.append(plot)
        return files


def plot_history(state: dict[str, Any], out: str | Path) -> Path | None:
    """Held-out accuracy against predicted latency: every proposal of every iteration, and the path the search took (§4.2)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    hist = state["history"]
    fig, ax = plt.subplots(figsize=(7, 5))
    cmap = plt.get_cmap("viridis")
    n = max(len(hist), 1)
    for r in hist:
        ps = r["proposals"]
        ax.scatter([p["latency_ms"] for p in ps], [100 * p["accuracy"] for p in ps], s=14, color=cmap((r["iteration"] - 1) / n), alpha=0.6)
    xs = [state["seed_latency_ms"], *(r["latency_ms"] for r in hist)]
    ys = [100 * state["seed_accuracy"], *(100 * r["accuracy"] for r in hist)]
    ax.plot(xs, ys, "o-", color="black", lw=1.5, label="chosen (seed first)")
    ax.axvline(state["target_ms"], color="red", ls="--", lw=1, label=f"target {state['target_ms']:.3f} ms")
    if state.get("final"):
        ax.scatter([state["latency_ms"]], [100 * state["final"]["accuracy"]], marker="*", s=120, color="C1", label="after final fine-tuning", zorder=3)
    ax.set(xlabel="LUT-predicted latency (ms)", ylabel="held-out accuracy (%)", title=f"NetAdapt (§4.2): {len(hist)} iteration(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if xs and not math.isclose(min(xs), max(xs)):
        ax.invert_xaxis()  # the search moves right to left
    fig.tight_layout()
    try:
        return atomic_save_figure(fig, out)
    finally:
        plt.close(fig)
