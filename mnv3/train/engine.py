"""The training engine: any task, mixed precision, channels_last, EMA, DDP, atomic checkpoints, exact resume,
and run phases that survive a kill at any moment.

:func:`train` runs a whole job from a :class:`TrainConfig`. A :class:`Trainer` holds the run's pieces and
its state, and goes through the phases of :class:`mnv3.train.run_state.RunPhase`: training (epochs of
steps, periodic validation and checkpoints), final evaluation, artifacts, finished. What a network's
outputs mean (loss, metrics, reports) is the task's (:mod:`mnv3.tasks`); the engine knows nothing of it.
Under ``torchrun`` the run is data-parallel (DDP over gloo on CPU, nccl on CUDA) with a
DistributedSampler; only rank 0 logs and writes. The paper's training set-up (§6.1.1) is the ``paper``
recipe; EMA uses ``torch.optim.swa_utils.AveragedModel``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from mnv3.spec.serialize import spec_to_dict
from mnv3.tasks import Evaluation, Task, task_class
from mnv3.train import data as D
from mnv3.train.checkpoint import capture_rng, load_checkpoint, remove_stale_temporaries, restore_rng, save_checkpoint
from mnv3.train.config import TrainConfig, config_from_dict, dump_config
from mnv3.train.distributed import DistInfo, all_gather_object, all_reduce_, barrier, broadcast_object, init_distributed, shutdown
from mnv3.train.evaluate import autocast, evaluate
from mnv3.train.metrics import MetricsLogger, read_metrics, truncate_metrics
from mnv3.train.optim import build_optimizer, build_scheduler
from mnv3.train.run_state import RunLock, RunPhase, RunStatusFile, missing_artifacts, read_status, write_status
from mnv3.train.task_data import build_task_data
from mnv3.utils.atomic import atomic_write_text


class RunStatus(str, Enum):
    """How a training process ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM: last.pt saved, resumable
    NONFINITE = "nonfinite"  # a non-finite loss: stopped before taking the step
    WRITE_FAILED = "write_failed"  # a checkpoint or artifact could not be written; the previous files are intact


@dataclass
class TrainResult:
    """How a run ended, where it lives, and its final evaluation."""

    status: RunStatus
    run_dir: Path
    step: int
    epoch: float
    message: str = ""
    final: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None
    signal: int | None = None
    train_images_per_s: float = 0.0
    wall_s: float = 0.0
    phase: RunPhase = RunPhase.TRAINING
    artifacts: list[Path] = field(default_factory=list)
    summary: str = ""  # the final evaluation in the task's words, e.g. "top-1 91.20 %, top-5 99.80 %"
    split: str = ""  # the evaluation split's name (test, val)

    @property
    def exit_code(self) -> int:
        """0 finished, 128 + signal when interrupted (130 SIGINT, 143 SIGTERM), 1 for a non-finite loss or a failed write."""
        if self.status == RunStatus.COMPLETED:
            return 0
        if self.status == RunStatus.INTERRUPTED:
            return 128 + (self.signal or signal.SIGINT)
        return 1


class StopFlag:
    """SIGINT / SIGTERM set a flag the loop checks after each step (a second SIGINT aborts at once)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class WriteFailed(Exception):
    """A run file could not be written (disk full, permission denied); carries the one line to print."""


def ema_avg_fn(decay: float, warmup: bool) -> Callable:
    """``get_ema_multi_avg_fn`` with the usual warm-up: decay min(d, (1 + n) / (10 + n)) after n updates."""

    def fn(ema_params, params, num_averaged) -> None:
        d = min(decay, (1 + float(num_averaged)) / (10 + float(num_averaged))) if warmup else decay
        get_ema_multi_avg_fn(d)(ema_params, params, num_averaged)

    return fn


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (and no cuDNN autotuning) when ``on``."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=False)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> nn.Module:
    """The configured mnv3 network, with ``weights`` loaded (classifier resized to the data) when given.

    ``cfg.model`` may be a spec file (a NetAdapt or NAS result): it is built as written, with the data's classes.
    """
    from mnv3.models.registry import build_network, create_model, is_spec_file, resolve_spec
    from mnv3.weights.resolve import load_model

    if is_spec_file(cfg.model) and not cfg.weights:
        given = [k for k in ("preset", "width", "dropout", "bn_momentum", "model_overrides") if getattr(cfg, k)]
        if given:
            raise ValueError(f"{cfg.model} is a spec file: it fixes the network, so drop {given} (or edit the file)")
        spec = resolve_spec(cfg.model, num_classes)
        if spec.in_chans != in_chans:
            raise ValueError(f"{cfg.model} takes {spec.in_chans}-channel input but the data has {in_chans} channel(s); edit in_chans in the file")
        return build_network(spec)

    kw: dict[str, Any] = {}
    if cfg.width is not None:
        kw["width"] = cfg.width
    if cfg.dropout is not None:
        kw["dropout"] = cfg.dropout
    if cfg.bn_momentum is not None:
        kw["bn_momentum"] = cfg.bn_momentum
    kw.update(cfg.model_overrides or {})
    if cfg.weights:  # the weights decide the preset unless the config names one (then they must agree)
        return load_model(cfg.weights, model=cfg.model, preset=cfg.preset, num_classes=num_classes, in_chans=in_chans, **kw)
    return create_model(cfg.model, num_classes=num_classes, preset=cfg.preset or "paper", in_chans=in_chans, **kw)


def build_task(cfg: TrainConfig, classes: list[str]) -> Task:
    """The configured task (``cfg.task``, a name in :data:`mnv3.tasks.TASKS`) over the data's classes."""
    return task_class(cfg.task).from_config(cfg, classes)


@dataclass(frozen=True)
class Hooks:
    """What a higher layer adds to a run without the engine importing it (the CLI passes deploy's QAT here).

    ``prepare_model(model, example_inputs)`` wraps the network before training (quantization-aware
    training); ``artifacts(model, run_dir, example_input, log)`` writes extra files at the end and returns them.
    """

    prepare_model: Callable[[nn.Module, tuple[torch.Tensor, ...]], nn.Module] | None = None
    artifacts: Callable[[nn.Module, Path, torch.Tensor, Callable[[str], None]], list[Path]] | None = None


def resume_point(resume: str | Path) -> tuple[dict[str, Any] | None, Path]:
    """The checkpoint to resume from and the run folder; a run killed before its first checkpoint (a folder with
    its ``config.yaml`` but no ``last.pt``) starts again from step 0 in its own folder."""
    p = Path(resume)
    if p.is_dir() and not (p / "last.pt").is_file() and (p / "config.yaml").is_file():
        return None, p
    return load_checkpoint(p), p if p.is_dir() else p.parent


def resume_config(resume: str | Path) -> TrainConfig:
    """The configuration a resumed run continues with: its checkpoint's, or its ``config.yaml`` before any checkpoint."""
    from mnv3.train.config import load_recipe

    ckpt, run_dir = resume_point(resume)
    return config_from_dict(ckpt["config"]) if ckpt is not None else load_recipe(str(run_dir / "config.yaml"))


def _run_dir(cfg: TrainConfig, data_name: str) -> Path:
    tag = "fashion-mnist" if data_name == D.FASHION_MNIST else Path(data_name).name
    model = Path(cfg.model).stem if Path(cfg.model).suffix in (".yaml", ".yml", ".json") else cfg.model  # a spec file: its stem
    name = cfg.name or f"{model}-{tag}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base = Path(cfg.output) / name
    run, k = base, 1
    while run.exists() and any(p.name != ".lock" for p in run.iterdir()):
        run = base.with_name(f"{base.name}-{k}")
        k += 1
    return run


class RunLog:
    """The run's log: printed on rank 0 only (through tqdm.write while a bar is open); ``RunLog(False)`` is silent."""

    def __init__(self, enabled: bool, sink: Callable[[str], None] | None = None) -> None:
        self.enabled = enabled
        self.sink = sink

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        if self.sink is not None:
            self.sink(msg)
            return
        from tqdm import tqdm

        tqdm.write(msg)


def train(
    cfg: TrainConfig,
    resume: str | Path | None = None,
    *,
    model: nn.Module | None = None,
    log: Callable[[str], None] | None = None,
    hooks: Hooks | None = None,
) -> TrainResult:
    """Run (or resume) a training job; returns how it ended. ``model`` replaces the configured network
    (the benchmark trains torchvision's MobileNetV2 through this same loop); ``hooks`` add QAT."""
    t_start = time.perf_counter()
    info, device = init_distributed(cfg.device)
    hooks = hooks or Hooks()
    if cfg.qat and hooks.prepare_model is None:
        raise ValueError("qat needs a prepare_model hook (mnv3.deploy.quantize.qat_hooks()); `mnv3 train --qat` passes it")
    try:
        result = Trainer(cfg, info, device, RunLog(info.is_main, log), hooks, model, resume).run()
    finally:
        shutdown()
    result.wall_s = time.perf_counter() - t_start
    return result


class Trainer:
    """One run: its data, task, network, optimizer, EMA and state, and the phases it goes through."""

    def __init__(
        self, cfg: TrainConfig, info: DistInfo, device: torch.device, log: RunLog, hooks: Hooks,
        model: nn.Module | None = None, resume: str | Path | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.info, self.device, self.log, self.hooks = cfg, info, device, log, hooks
        ckpt, resume_dir = resume_point(resume) if resume else (None, None)
        if ckpt is not None:
            saved = config_from_dict(ckpt["config"])
            if saved.batch_size != cfg.batch_size or saved.seed != cfg.seed:
                raise ValueError("a resumed run keeps its batch size and seed; drop --batch-size / --seed when resuming")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        set_deterministic(cfg.deterministic)
        if cfg.precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs CUDA (it uses a GradScaler); use --set precision=bf16 on the CPU")
        if cfg.sync_bn and info.enabled and device.type != "cuda":
            raise ValueError("SyncBatchNorm needs CUDA devices (torch supports it only there); drop sync_bn for CPU runs")

        seed_everything(cfg.seed)
        self.data = build_task_data(cfg, info)
        self.task = build_task(cfg, self.data.classes)
        self.steps_per_epoch = D.steps_per_epoch(self.data.train, info, cfg.batch_size)
        self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        self.stop_at = min(self.total_steps, cfg.max_steps or self.total_steps)
        self.per_rank = D.per_rank_batch(cfg.batch_size, info)
        if self.per_rank % cfg.grad_accum_steps:
            raise ValueError(f"the per-process batch {self.per_rank} does not split into grad_accum_steps={cfg.grad_accum_steps} micro-batches")
        self._build_network(model)
        # Per-rank streams (dropout, mixup) after the shared initialisation.
        seed_everything(cfg.seed + 1_000_003 * info.rank)

        self.step, self.best, self.saved_step = 0, -1.0, None
        self.phase = RunPhase.TRAINING
        if ckpt is not None:
            self._restore(ckpt)
        if resume_dir is not None:
            self.run_dir = resume_dir
        else:
            fresh = _run_dir(cfg, self.data.name) if info.is_main else None
            self.run_dir = broadcast_object(fresh) if info.enabled else fresh  # type: ignore[assignment]
        self.resumed_from = resume
        self.metrics = MetricsLogger(self.run_dir, enabled=False)
        self.lock = RunLock(self.run_dir)
        self.train_time, self.train_images = 0.0, 0

    # ---- set-up

    def _build_network(self, model: nn.Module | None) -> None:
        """Network (same initial weights on every rank: seeded before it is built), optimizer, schedule, EMA, DDP."""
        cfg, info, device = self.cfg, self.info, self.device
        seed_everything(cfg.seed)
        self.own_model = model is None
        if model is None:
            model = build_model(cfg, self.task.num_outputs, self.data.in_chans)
        self.net_spec = getattr(model, "spec", None)  # the bare network's, before QAT / DDP wrapping
        if cfg.qat:
            size = cfg.resolution
            model = self.hooks.prepare_model(model, (torch.randn(2, self.data.in_chans, size, size),))  # type: ignore[misc]
        model = model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and info.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.core = model
        self.opt = build_optimizer(self.core, cfg)
        self.sched = build_scheduler(self.opt, self.steps_per_epoch, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.ema = (
            AveragedModel(self.core, multi_avg_fn=ema_avg_fn(cfg.ema_decay, cfg.ema_warmup), use_buffers=True) if cfg.ema_decay else None
        )
        ids = [device.index] if device.type == "cuda" else None
        self.net: nn.Module = DistributedDataParallel(self.core, device_ids=ids) if info.enabled else self.core
        self.fwd = torch.compile(self.net) if cfg.compile else self.net
        self.mix = self.task.batch_transform()

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Model, optimizer, schedule, scaler, EMA, step, best metric and random streams from a checkpoint."""
        self.core.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.step, self.best = int(ckpt["step"]), float(ckpt.get("best_top1", -1.0))
        self.saved_step = self.step
        info = self.info
        if ckpt.get("world_size") == info.world_size and len(ckpt["rng"]) == info.world_size:
            restore_rng(ckpt["rng"][info.rank])
        else:
            self.log(f"note: resumed with {info.world_size} process(es), saved with {ckpt.get('world_size')}; dropout/mixup streams restart")
        if self.steps_per_epoch != int(ckpt["steps_per_epoch"]):
            raise ValueError(f"the data changed since the checkpoint ({self.steps_per_epoch} steps per epoch now, {ckpt['steps_per_epoch']} then)")

    @property
    def eval_model(self) -> nn.Module:
        """The network that is evaluated and saved: the EMA average when there is one."""
        return self.ema.module if self.ema is not None else self.core

    # ---- state and files

    def checkpoint_state(self, phase: RunPhase) -> dict[str, Any]:
        """Everything an exact resume needs (collective: every rank's random streams are gathered)."""
        spe = self.steps_per_epoch
        return {
            "config": self.cfg.to_dict(),
            "task": self.task.name,
            "phase": phase.value,
            "model": self.core.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": all_gather_object(capture_rng()),
            "step": self.step,
            "epoch": self.step / spe,
            "steps_per_epoch": spe,
            "world_size": self.info.world_size,
            "sampler": {"seed": self.cfg.seed, "epoch": self.step // spe, "batch": self.step % spe},
            "best_top1": self.best,  # the task's primary metric (named for the classification runs that wrote it first)
            "classes": self.data.classes,
            # what mnv3.weights.resolve needs to rebuild the network from this file alone
            "spec": spec_to_dict(self.net_spec) if self.net_spec is not None else None,
            "preprocessing": dataclasses.asdict(self.data.preprocessing),
        }

    def save(self, name: str, phase: RunPhase, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a checkpoint atomically (collective); a failed write on rank 0 stops every rank with WriteFailed."""
        state = state if state is not None else self.checkpoint_state(phase)
        error: OSError | None = None
        if self.info.is_main:
            try:
                save_checkpoint(self.run_dir / name, state)
            except OSError as e:
                error = e
        failed = all_reduce_(torch.tensor([1.0 if error else 0.0]), torch.distributed.ReduceOp.MAX) if self.info.enabled else None
        if error is not None:
            raise WriteFailed(self._write_failure(self.run_dir / name, error))
        if failed is not None and float(failed[0]) > 0:
            raise WriteFailed(f"rank 0 could not write {self.run_dir / name}; see its log")
        if name == "last.pt":
            self.saved_step = self.step
        return state

    def _write_failure(self, path: Path, e: OSError) -> str:
        kept = f"the previous checkpoint (step {self.saved_step}) is intact" if self.saved_step is not None else "no checkpoint had been written yet"
        return (
            f"could not write {path}: {e.strerror or e}; {kept}. Free disk space or fix the folder's permissions, "
            f"then continue with: mnv3 train --resume {self.run_dir}"
        )

    def write_status(
        self, outcome: RunStatus | None = None, message: str = "", artifacts: list[Path] | None = None, summary: str = ""
    ) -> None:
        """Mirror the run's phase, step and best metric to ``status.json`` (rank 0)."""
        if not self.info.is_main:
            return
        best = {"metric": self.task.primary_metric, "value": self.best} if self.best >= 0 else {}
        status = RunStatusFile(
            self.phase, self.step, self.stop_at, self.cfg.model if self.own_model else type(self.core).__name__, self.data.name,
            outcome.value if outcome is not None else None, message, best,
            [str(p.relative_to(self.run_dir)) for p in artifacts or []], summary,
        )  # fmt: skip
        write_status(self.run_dir, status)

    def _open_run_folder(self) -> None:
        """Rank 0 takes the folder's lock, clears dead writers' temporaries and starts (or trims) the metric log."""
        if self.info.is_main:
            self.lock.acquire()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
            atomic_write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
            if self.resumed_from is not None:
                truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            self.metrics = MetricsLogger(self.run_dir, enabled=True, tensorboard=self.cfg.tensorboard)
        barrier()

    def _resume_phase(self) -> RunPhase:
        """Where a resumed run goes on: training until its last step, then final evaluation, unless it finished."""
        if self.step < self.stop_at:
            return RunPhase.TRAINING
        status = read_status(self.run_dir)
        done = status is not None and status.phase is RunPhase.FINISHED and status.step == self.step
        if done and not missing_artifacts(self.run_dir, status):  # type: ignore[arg-type]
            return RunPhase.FINISHED
        return RunPhase.FINAL_EVAL

    # ---- the run

    def run(self) -> TrainResult:
        """Go through the phases from where the run stands; returns how this process ended."""
        self.phase = self._resume_phase() if self.resumed_from is not None else RunPhase.TRAINING
        if self.phase is RunPhase.FINISHED:
            return self._already_finished()
        try:
            self._open_run_folder()
        except BaseException:
            self.lock.release()
            raise
        try:
            return self._run_phases()
        finally:
            self.metrics.close()
            self.lock.release()

    def _run_phases(self) -> TrainResult:
        self._announce()
        signum: int | None = None
        try:
            if self.phase is RunPhase.TRAINING:
                self.write_status()
                with StopFlag() as stop:
                    status, message, signum = self.fit(stop)
                if status is not RunStatus.COMPLETED:
                    self.write_status(status, message)
                    return self._result(status, message, signum)
                self.phase = RunPhase.FINAL_EVAL
            self.write_status()
            ev = self.final_evaluation()
            self.phase = RunPhase.ARTIFACTS
            self.write_status()
            artifacts = self.write_artifacts(ev)
            summary = self.task.summary(ev) if ev is not None else ""
            self.phase = RunPhase.FINISHED
            self.write_status(RunStatus.COMPLETED, artifacts=artifacts, summary=summary)
        except WriteFailed as e:
            self.write_status_quietly(RunStatus.WRITE_FAILED, str(e))
            return self._result(RunStatus.WRITE_FAILED, str(e), None)
        result = self._result(RunStatus.COMPLETED, "", None)
        result.final, result.artifacts, result.summary = (ev.to_dict() if ev is not None else {}), artifacts, summary
        weights = self.run_dir / "model.safetensors"
        result.weights = weights if weights in artifacts else None
        return result

    def write_status_quietly(self, outcome: RunStatus, message: str) -> None:
        """Record a failure in ``status.json`` when the disk still lets us (it may be what failed)."""
        with contextlib.suppress(OSError):
            self.write_status(outcome, message)

    def _announce(self) -> None:
        cfg, data = self.cfg, self.data
        name = cfg.model if self.own_model else type(self.core).__name__
        self.log(
            f"mnv3 train: {name} on {data.name} ({len(data.train)} train / {len(data.val) if data.val else 0} {data.val_name} "
            f"images, {len(data.classes)} classes, {cfg.resolution}px, {data.in_chans} channel(s)); {self.info.world_size} "
            f"process(es) on {self.device}; batch {cfg.batch_size}, lr {cfg.effective_lr():.4g}, {self.steps_per_epoch} "
            f"steps/epoch, {self.stop_at} steps; run folder {self.run_dir}"
        )
        if self.resumed_from is not None:
            self.log(f"resumed at step {self.step} (epoch {self.step / self.steps_per_epoch:.2f}, phase {self.phase.value}) from {self.resumed_from}")

    def _result(self, status: RunStatus, message: str, signum: int | None) -> TrainResult:
        ips = self.train_images / max(self.train_time, 1e-9)
        return TrainResult(
            status, self.run_dir, self.step, self.step / self.steps_per_epoch, message, signal=signum, train_images_per_s=ips, phase=self.phase,
            split=self.data.val_name,
        )  # fmt: skip

    def _already_finished(self) -> TrainResult:
        """A finished run resumed: nothing to do; says so and points to its artifacts."""
        status = read_status(self.run_dir)
        artifacts = [self.run_dir / a for a in (status.artifacts if status else [])]
        self.log(f"{self.run_dir} already finished at step {self.step}; nothing to do. Artifacts: {', '.join(a.name for a in artifacts)}")
        result = self._result(RunStatus.COMPLETED, "already finished", None)
        result.phase, result.artifacts = RunPhase.FINISHED, artifacts
        result.summary = status.summary if status else ""
        final = self.run_dir / "final_metrics.json"
        if final.is_file():
            result.final = {k: v for k, v in json.loads(final.read_text()).items() if k != "split"}
        weights = self.run_dir / "model.safetensors"
        result.weights = weights if weights in artifacts else None
        return result

    # ---- training

    def fit(self, stop: StopFlag) -> tuple[RunStatus, str, int | None]:
        """Epochs of steps up to the last one, validating and checkpointing at epoch ends; the final state is
        saved as ``last.pt`` in phase final_eval. Returns (status, message, signal)."""
        spe = self.steps_per_epoch
        while self.step < self.stop_at:
            status, message, signum = self.train_one_epoch(stop)
            if status is not RunStatus.COMPLETED:
                return status, message, signum
            if self.step >= self.stop_at:
                break
            if self.step % spe == 0:  # an epoch ended before the last step
                improved = False
                if (self.step // spe) % max(self.cfg.eval_interval, 1) == 0:
                    ev = self.validate()
                    improved = ev is not None and ev.primary > self.best
                    if improved:
                        self.best = ev.primary  # type: ignore[union-attr]
                state = self.save("last.pt", RunPhase.TRAINING)
                if improved:
                    self.save("best.pt", RunPhase.TRAINING, state)
                if self.info.is_main:
                    self._plot_curves()
                self.write_status()
        self.save("last.pt", RunPhase.FINAL_EVAL)
        return RunStatus.COMPLETED, "", None

    def forward_backward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Forward and backward over ``grad_accum_steps`` interleaved slices of the batch (x[j::micro]); returns the mean loss.

        Slice j of a process's batch holds the same images as rank j's batch of a run with ``micro``
        times more processes, so accumulation here reproduces that run's gradients and BN statistics.
        """
        micro = self.cfg.grad_accum_steps
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for j in range(micro):
            xj, tj = (x, target) if micro == 1 else (x[j::micro], target[j::micro])
            sync = contextlib.nullcontext() if not self.info.enabled or j == micro - 1 else self.net.no_sync()  # type: ignore[operator]
            with sync:
                with autocast(self.device, self.cfg.precision):
                    out = self.fwd(xj)
                loss = self.task.loss(out, tj)
                self.scaler.scale(loss / micro).backward()
            total += loss.detach() / micro
        return total

    def optimizer_step(self) -> None:
        """Clip (when configured), step, update the scaler, the schedule and the EMA; advances the step count."""
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.core.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.core)
        self.step += 1

    def train_one_epoch(self, stop: StopFlag) -> tuple[RunStatus, str, int | None]:
        """The rest of the current epoch (a resumed run skips the batches it has seen), or until the last step."""
        from tqdm import tqdm

        cfg, info, spe = self.cfg, self.info, self.steps_per_epoch
        epoch, start_batch = divmod(self.step, spe)
        loader = D.train_loader(self.data.train, info, cfg, epoch, start_batch, pin=self.device.type == "cuda", collate=self.data.collate)
        bar = tqdm(
            total=spe, initial=start_batch, desc=f"epoch {epoch + 1}/{math.ceil(self.total_steps / spe)}", unit="step",
            disable=not (info.is_main and cfg.progress) or None, dynamic_ncols=True, leave=False,
        )  # fmt: skip
        flags = torch.zeros(2)
        t_interval, n_interval = time.perf_counter(), 0
        t_step = time.perf_counter()
        try:
            for x, y in loader:
                x = x.to(self.device, non_blocking=True)
                y = self.task.targets_to(y, self.device)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                target = y
                if self.mix is not None:
                    x, target = self.mix(x, y)
                loss = self.forward_backward(x, target)
                flags[0] = 0.0 if bool(torch.isfinite(loss).item()) else 1.0
                flags[1] = 1.0 if stop.signum is not None else 0.0
                all_reduce_(flags, torch.distributed.ReduceOp.MAX)
                if flags[0] > 0:
                    return RunStatus.NONFINITE, self._nonfinite_message(loss), None
                self.optimizer_step()
                n_interval += 1
                now = time.perf_counter()
                self.train_time += now - t_step
                self.train_images += self.per_rank * info.world_size
                bar.update(1)
                if self.step % cfg.log_interval == 0 or self.step == 1 or self.step == self.stop_at:
                    self._log_train(loss, bar, n_interval, now - t_interval)
                    t_interval, n_interval = now, 0
                at_end = self.step >= self.stop_at
                if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0 and self.step % spe != 0 and not at_end:
                    self.save("last.pt", RunPhase.TRAINING)
                    self.write_status()
                if flags[1] > 0:
                    signum = int(stop.signum or signal.SIGTERM)
                    if not at_end:  # at the last step, fit() saves the final state itself
                        self.save("last.pt", RunPhase.TRAINING)
                    else:
                        self.save("last.pt", RunPhase.FINAL_EVAL)
                    name = signal.Signals(signum).name
                    msg = f"{name} received: saved {self.run_dir / 'last.pt'} at step {self.step}; continue with: mnv3 train --resume {self.run_dir}"
                    return RunStatus.INTERRUPTED, msg, signum
                if at_end:
                    break
                t_step = time.perf_counter()
        finally:
            bar.close()
        return RunStatus.COMPLETED, "", None

    def _log_train(self, loss: torch.Tensor, bar: Any, n_steps: int, seconds: float) -> None:
        loss_v = float(all_reduce_(loss.float().reshape(1).clone()) / self.info.world_size)  # the global batch's loss
        img_s = n_steps * self.cfg.batch_size / max(seconds, 1e-9)
        lr = self.opt.param_groups[0]["lr"]
        self.metrics.log("train", self.step, epoch=self.step / self.steps_per_epoch, loss=loss_v, lr=lr, img_s=img_s)
        eta = (self.stop_at - self.step) * self.cfg.batch_size / max(img_s, 1e-9)  # the whole run, at the current pace
        bar.set_postfix(loss=f"{loss_v:.4f}", img_s=f"{img_s:.0f}", lr=f"{lr:.3g}", run_eta=f"{eta / 60:.1f}min")

    def _nonfinite_message(self, loss: torch.Tensor) -> str:
        last = self.run_dir / "last.pt"
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
        at = self.step + 1
        return (
            f"loss is {float(loss):.4g} (not finite) at step {at} (epoch {at / self.steps_per_epoch:.2f}); the run stopped "
            f"without taking this step or saving, and {kept}. Lower the learning rate (--lr), set a gradient clip "
            "(--set grad_clip=1.0), or check the data."
        )

    # ---- evaluation

    def _evaluate(self, model: nn.Module) -> Evaluation:
        loader = D.eval_loader(self.data.val, self.info, self.cfg, pin=self.device.type == "cuda", collate=self.data.collate)  # type: ignore[arg-type]
        return evaluate(model, loader, self.task, self.device, self.cfg.precision, self.cfg.channels_last)

    @torch.no_grad()
    def recalibrate_bn(self, batches: int) -> None:
        """Recompute the BatchNorm running statistics of the saved network over ``batches`` training batches.

        A run of a few dozen steps leaves running statistics that mostly hold their initial values (the paper's BN
        decay 0.99 moves them 1 % a step), so its evaluation says little about the network; once-for-all's BN
        calibration (arXiv 1908.09791 §3.3) recomputes them first. ``torch.optim.swa_utils.update_bn`` does it.
        """
        from itertools import islice

        from torch.optim.swa_utils import update_bn

        if batches <= 0:
            return
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        loader = D.train_loader(self.data.train, self.info, self.cfg, 0, 0, pin=False, collate=self.data.collate)
        update_bn((x.to(self.device, memory_format=fmt) for x, _ in islice(loader, batches)), self.eval_model)

    def validate(self, final: bool = False) -> Evaluation | None:
        """Evaluate the saved network (EMA when on, and the raw one beside it) and log it; None without validation data."""
        if self.data.val is None:
            return None
        ev = self._evaluate(self.eval_model)
        raw = self._evaluate(self.core) if self.ema is not None else None
        extra = {f"{self.task.primary_metric}_raw": raw.primary} if raw is not None else {}
        record = {"epoch": self.step / self.steps_per_epoch, **ev.scalars(), **extra}
        # the final record replaces any earlier one at its step (a resumed final evaluation logs once)
        self.metrics.log("eval", self.step, replace=final, **record)
        raw_s = f" (without EMA {self.task.summary(raw)})" if raw is not None else ""
        self.log(f"epoch {self.step / self.steps_per_epoch:.2f}: {self.data.val_name} {self.task.summary(ev)}{raw_s}")
        return ev

    def final_evaluation(self) -> Evaluation | None:
        """Evaluate the final network; it becomes ``best.pt`` when it beats every earlier evaluation."""
        ev = self.validate(final=True)
        if ev is not None and ev.primary > self.best:
            self.best = ev.primary
            self.save("best.pt", RunPhase.FINAL_EVAL)
        return ev

    # ---- artifacts

    def _plot_curves(self) -> Path | None:
        from mnv3.train.plots import plot_curves

        return plot_curves(read_metrics(self.run_dir / "metrics.jsonl"), self.run_dir / "curves.png", self.task.primary_metric)

    def write_artifacts(self, ev: Evaluation | None) -> list[Path]:
        """Rank 0: final metrics, the task's figures, curves, the weights as mnv3 safetensors and the hooks' files,
        each written whole; writing them again (a resumed run) gives the same files."""
        if not self.info.is_main:
            return []
        from mnv3.weights.io import WeightsMeta, save_weights

        cfg, data, run_dir = self.cfg, self.data, self.run_dir
        out: list[Path] = []
        try:
            if ev is not None:
                path = run_dir / "final_metrics.json"
                atomic_write_text(path, json.dumps({"split": data.val_name, **ev.to_dict()}, indent=2))
                out.append(path)
                out += self.task.write_reports(ev, run_dir, f"{data.name} {data.val_name}")
            curves = self._plot_curves()
            if curves is not None:
                out.append(curves)
            model = self.eval_model
            # a QAT network is saved as its fine-tuned float network (its int8 program comes from hooks.artifacts)
            net = model.to_float() if hasattr(model, "to_float") else model
            if self.own_model and getattr(net, "spec", None) is not None:
                metrics = {f"{data.name} {data.val_name} {k}": v for k, v in (ev.headline() if ev is not None else {}).items()}
                meta = WeightsMeta(
                    preprocessing=data.preprocessing,
                    categories=list(data.classes),
                    metrics=metrics,
                    recipe=cfg.to_dict(),
                    source=f"mnv3 train, run {run_dir.name}" + (" (quantization-aware training; float weights)" if cfg.qat else ""),
                )
                path = run_dir / "model.safetensors"
                save_weights(net.to("cpu").to(memory_format=torch.contiguous_format), path, meta)
                out.append(path)
            if self.hooks.artifacts is not None:
                size = data.preprocessing.crop
                out += self.hooks.artifacts(model, run_dir, torch.zeros(1, data.in_chans, size, size), self.log) or []
        except OSError as e:
            raise WriteFailed(f"could not write the run's artifacts in {run_dir}: {e}; continue with: mnv3 train --resume {run_dir}") from None
        missing = [p for p in out if not p.is_file()]
        if missing:
            raise WriteFailed(f"artifacts missing after writing them: {', '.join(map(str, missing))}; resume with: mnv3 train --resume {run_dir}")
        return out
