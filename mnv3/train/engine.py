"""The training loop: mixed precision, channels_last, EMA, DDP, atomic checkpoints, exact resume.

One function, :func:`train`, runs a whole job from a :class:`TrainConfig`. Under ``torchrun`` it
is data-parallel (DDP over gloo on CPU, nccl on CUDA) with a DistributedSampler; only rank 0
logs and writes. The paper's training set-up (§6.1.1) is the ``paper`` recipe; EMA uses
``torch.optim.swa_utils.AveragedModel``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import signal
import socket
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

from mnv3.data.transforms import batch_mix
from mnv3.spec.serialize import spec_to_dict
from mnv3.train import data as D
from mnv3.train.checkpoint import capture_rng, load_checkpoint, remove_stale_temporaries, restore_rng, save_checkpoint
from mnv3.train.config import TrainConfig, config_from_dict, dump_config
from mnv3.train.distributed import DistInfo, all_gather_object, all_reduce_, barrier, broadcast_object, init_distributed, shutdown
from mnv3.train.evaluate import EvalResult, autocast, evaluate
from mnv3.train.metrics import MetricsLogger, read_metrics, truncate_metrics
from mnv3.train.optim import build_optimizer, build_scheduler


class RunStatus(str, Enum):
    """How a training run ended."""

    COMPLETED = "completed"
    INTERRUPTED = "interrupted"  # SIGINT / SIGTERM: last.pt saved, resumable
    NONFINITE = "nonfinite"  # a non-finite loss: stopped before taking the step


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

    @property
    def exit_code(self) -> int:
        """0 completed, 128 + signal when interrupted (130 SIGINT, 143 SIGTERM), 1 for a non-finite loss."""
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
    """The configured mnv3 network, with ``weights`` loaded (classifier resized to the data) when given."""
    from mnv3.models.registry import create_model
    from mnv3.weights.resolve import load_model

    kw: dict[str, Any] = {}
    if cfg.width is not None:
        kw["width"] = cfg.width
    if cfg.dropout is not None:
        kw["dropout"] = cfg.dropout
    if cfg.bn_momentum is not None:
        kw["bn_momentum"] = cfg.bn_momentum
    if cfg.weights:  # the weights decide the preset unless the config names one (then they must agree)
        return load_model(cfg.weights, model=cfg.model, preset=cfg.preset, num_classes=num_classes, in_chans=in_chans, **kw)
    return create_model(cfg.model, num_classes=num_classes, preset=cfg.preset or "paper", in_chans=in_chans, **kw)


@dataclass(frozen=True)
class Hooks:
    """What a higher layer adds to a run without the loop importing it (the CLI passes deploy's QAT here).

    ``prepare_model(model, example_inputs)`` wraps the network before training (quantization-aware
    training); ``artifacts(model, run_dir, example_input, log)`` writes extra files at the end.
    """

    prepare_model: Callable[[nn.Module, tuple[torch.Tensor, ...]], nn.Module] | None = None
    artifacts: Callable[[nn.Module, Path, torch.Tensor, Callable[[str], None]], None] | None = None


def _run_dir(cfg: TrainConfig, data_name: str) -> Path:
    tag = "fashion-mnist" if data_name == D.FASHION_MNIST else Path(data_name).name
    name = cfg.name or f"{cfg.model}-{tag}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base = Path(cfg.output) / name
    run, k = base, 1
    while run.exists() and any(run.iterdir()):
        run = base.with_name(f"{base.name}-{k}")
        k += 1
    return run


def _host_line() -> str:
    return f"{socket.gethostname()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


class _Log:
    """Prints on rank 0 only (through tqdm.write while a bar is open)."""

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
        return _train(cfg, resume, model, info, device, _Log(info.is_main, log), t_start, hooks)
    finally:
        shutdown()


def _train(
    cfg: TrainConfig, resume, model: nn.Module | None, info: DistInfo, device: torch.device, log: _Log, t_start: float, hooks: Hooks
) -> TrainResult:
    ckpt = load_checkpoint(resume) if resume else None
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
    data = D.build_data(cfg, info)
    spe = D.steps_per_epoch(data.train, info, cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * spe))
    stop_at = min(total_steps, cfg.max_steps or total_steps)

    # ---- the network (same initial weights on every rank: seeded before it is built)
    seed_everything(cfg.seed)
    own_model = model is None
    if model is None:
        model = build_model(cfg, len(data.classes), data.in_chans)
    net_spec = getattr(model, "spec", None)  # the bare network's, before QAT / DDP wrapping
    if cfg.qat:
        model = hooks.prepare_model(model, (torch.randn(2, data.in_chans, cfg.resolution, cfg.resolution),))  # type: ignore[misc]
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    core = model
    opt = build_optimizer(core, cfg)
    sched = build_scheduler(opt, spe, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    ema = AveragedModel(core, multi_avg_fn=ema_avg_fn(cfg.ema_decay, cfg.ema_warmup), use_buffers=True) if cfg.ema_decay else None
    net: nn.Module = DistributedDataParallel(core, device_ids=[device.index] if device.type == "cuda" else None) if info.enabled else core
    fwd = torch.compile(net) if cfg.compile else net
    mix = batch_mix(cfg.mixup, cfg.cutmix, len(data.classes))
    # Per-rank streams (dropout, mixup) after the shared initialisation.
    seed_everything(cfg.seed + 1_000_003 * info.rank)

    step, best = 0, -1.0
    if ckpt is not None:
        core.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        step, best = int(ckpt["step"]), float(ckpt.get("best_top1", -1.0))
        if ckpt.get("world_size") == info.world_size and len(ckpt["rng"]) == info.world_size:
            restore_rng(ckpt["rng"][info.rank])
        else:
            log(f"note: resumed with {info.world_size} process(es), saved with {ckpt.get('world_size')}; dropout/mixup streams restart")
        if spe != int(ckpt["steps_per_epoch"]):
            raise ValueError(f"the data changed since the checkpoint ({spe} steps per epoch now, {ckpt['steps_per_epoch']} then)")
        run_dir = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    else:
        run_dir = broadcast_object(_run_dir(cfg, data.name) if info.is_main else None) if info.enabled else _run_dir(cfg, data.name)

    metrics = MetricsLogger(run_dir, enabled=False)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run_dir)
        (run_dir / "config.yaml").write_text(dump_config(cfg))
        if ckpt is not None:
            truncate_metrics(run_dir / "metrics.jsonl", step)
        metrics = MetricsLogger(run_dir, enabled=True, tensorboard=cfg.tensorboard)
    barrier()

    n_train = len(data.train)
    log(
        f"mnv3 train: {cfg.model if own_model else type(core).__name__} on {data.name} ({n_train} train / "
        f"{len(data.val) if data.val else 0} {data.val_name} images, {len(data.classes)} classes, {cfg.resolution}px, "
        f"{data.in_chans} channel(s)); {info.world_size} process(es) on {device}; batch {cfg.batch_size}, "
        f"lr {cfg.effective_lr():.4g}, {spe} steps/epoch, {stop_at} steps; run folder {run_dir}"
    )
    if ckpt is not None:
        log(f"resumed at step {step} (epoch {step / spe:.2f}) from {resume}")

    def checkpoint_state() -> dict[str, Any]:
        return {
            "config": cfg.to_dict(),
            "model": core.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "scaler": scaler.state_dict(),
            "rng": all_gather_object(capture_rng()),
            "step": step,
            "epoch": step / spe,
            "steps_per_epoch": spe,
            "world_size": info.world_size,
            "sampler": {"seed": cfg.seed, "epoch": step // spe, "batch": step % spe},
            "best_top1": best,
            "classes": data.classes,
            # what mnv3.weights.resolve needs to rebuild the network from this file alone
            "spec": spec_to_dict(net_spec) if net_spec is not None else None,
            "preprocessing": dataclasses.asdict(data.preprocessing),
        }

    def save(name: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        state = state if state is not None else checkpoint_state()  # collective: every rank calls it
        if info.is_main:
            save_checkpoint(run_dir / name, state)
        return state

    def run_eval() -> tuple[EvalResult | None, EvalResult | None]:
        if data.val is None:
            return None, None
        loader = D.eval_loader(data.val, info, cfg, pin=device.type == "cuda")
        main = evaluate(ema.module if ema is not None else core, loader, len(data.classes), device, cfg.precision, cfg.channels_last, data.classes)
        raw = evaluate(core, loader, len(data.classes), device, cfg.precision, cfg.channels_last, data.classes) if ema is not None else None
        return main, raw

    from tqdm import tqdm

    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    micro = cfg.grad_accum_steps

    def train_forward_backward(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Forward and backward over ``micro`` interleaved slices of the batch (x[j::micro]); returns the mean loss.

        Slice j of a process's batch holds the same images as rank j's batch of a run with ``micro``
        times more processes, so accumulation here reproduces that run's gradients and BN statistics.
        """
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for j in range(micro):
            xj, tj = (x, target) if micro == 1 else (x[j::micro], target[j::micro])
            sync = contextlib.nullcontext() if not info.enabled or j == micro - 1 else net.no_sync()  # type: ignore[operator]
            with sync:
                with autocast(device, cfg.precision):
                    logits = fwd(xj)
                loss = criterion(logits.float(), tj)
                scaler.scale(loss / micro).backward()
            total += loss.detach() / micro
        return total

    flags = torch.zeros(2)
    status, message, signum = RunStatus.COMPLETED, "", None
    last_eval: EvalResult | None = None
    train_time, train_images = 0.0, 0
    per_rank = D.per_rank_batch(cfg.batch_size, info)
    if per_rank % cfg.grad_accum_steps:
        raise ValueError(f"the per-process batch {per_rank} does not split into grad_accum_steps={cfg.grad_accum_steps} micro-batches")
    with StopFlag() as stop:
        while step < stop_at and status == RunStatus.COMPLETED:
            epoch, start_batch = divmod(step, spe)
            loader = D.train_loader(data.train, info, cfg, epoch, start_batch, pin=device.type == "cuda")
            bar = tqdm(
                total=spe, initial=start_batch, desc=f"epoch {epoch + 1}/{math.ceil(total_steps / spe)}", unit="step",
                disable=not (info.is_main and cfg.progress) or None, dynamic_ncols=True, leave=False,
            )
            t_interval, n_interval = time.perf_counter(), 0
            t_step = time.perf_counter()
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                target = y
                if mix is not None:
                    x, target = mix(x, y)
                loss = train_forward_backward(x, target)
                flags[0] = 0.0 if bool(torch.isfinite(loss).item()) else 1.0
                flags[1] = 1.0 if stop.signum is not None else 0.0
                all_reduce_(flags, torch.distributed.ReduceOp.MAX)
                if flags[0] > 0:
                    status = RunStatus.NONFINITE
                    last = run_dir / "last.pt"
                    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
                    message = (
                        f"loss is {float(loss):.4g} (not finite) at step {step + 1} (epoch {(step + 1) / spe:.2f}); the run stopped "
                        f"without taking this step or saving, and {kept}. Lower the learning rate (--lr), set a gradient clip "
                        "(--set grad_clip=1.0), or check the data."
                    )
                    break
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(core.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                sched.step()
                if ema is not None:
                    ema.update_parameters(core)
                step += 1
                n_interval += 1
                now = time.perf_counter()
                train_time += now - t_step
                train_images += per_rank * info.world_size
                bar.update(1)
                if step % cfg.log_interval == 0 or step == 1 or step == stop_at:
                    loss_avg = all_reduce_(loss.float().reshape(1).clone()) / info.world_size  # the global batch's loss
                    loss_v = float(loss_avg)
                    img_s = n_interval * cfg.batch_size / max(now - t_interval, 1e-9)
                    lr = opt.param_groups[0]["lr"]
                    metrics.log("train", step, epoch=step / spe, loss=loss_v, lr=lr, img_s=img_s)
                    eta = (stop_at - step) * cfg.batch_size / max(img_s, 1e-9)  # the whole run, at the current pace
                    bar.set_postfix(loss=f"{loss_v:.4f}", img_s=f"{img_s:.0f}", lr=f"{lr:.3g}", run_eta=f"{eta / 60:.1f}min")
                    t_interval, n_interval = now, 0
                if cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0 and step % spe != 0:
                    save("last.pt")
                if flags[1] > 0:
                    status, signum = RunStatus.INTERRUPTED, int(stop.signum or signal.SIGTERM)
                    save("last.pt")
                    name = signal.Signals(signum).name
                    message = f"{name} received: saved {run_dir / 'last.pt'} at step {step}; continue with: mnv3 train --resume {run_dir}"
                    break
                if step >= stop_at:
                    break
                t_step = time.perf_counter()
            bar.close()
            if status != RunStatus.COMPLETED:
                break
            epoch_done = step % spe == 0
            if (epoch_done and (step // spe) % max(cfg.eval_interval, 1) == 0) or step >= stop_at:
                last_eval, raw = run_eval()
                if last_eval is not None:
                    extra = {"top1_raw": raw.top1} if raw is not None else {}
                    metrics.log("eval", step, epoch=step / spe, top1=last_eval.top1, top5=last_eval.top5, loss=last_eval.loss, **extra)
                    raw_s = f" (without EMA {100 * raw.top1:.2f} %)" if raw is not None else ""
                    log(f"epoch {step / spe:.2f}: {data.val_name} top-1 {100 * last_eval.top1:.2f} %, top-5 {100 * last_eval.top5:.2f} %{raw_s}")
            improved = last_eval is not None and last_eval.top1 > best and (epoch_done or step >= stop_at)
            if improved:
                best = last_eval.top1  # type: ignore[union-attr]
            if epoch_done or step >= stop_at:
                state = save("last.pt")
                if improved:
                    save("best.pt", state)
                if info.is_main:
                    _plots(run_dir)

    metrics.close()
    result = TrainResult(status, run_dir, step, step / spe, message, signal=signum, train_images_per_s=train_images / max(train_time, 1e-9))
    if status == RunStatus.COMPLETED:
        result.final = _finish(cfg, core if ema is None else ema.module, data, last_eval, run_dir, info, own_model, log, hooks)
        result.weights = run_dir / "model.safetensors" if (run_dir / "model.safetensors").exists() else None
    result.wall_s = time.perf_counter() - t_start
    return result


def _plots(run_dir: Path) -> None:
    from mnv3.train.plots import plot_curves

    plot_curves(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png")


def _finish(
    cfg: TrainConfig, model: nn.Module, data: D.DataBundle, ev: EvalResult | None, run_dir: Path, info: DistInfo, own_model: bool,
    log: _Log, hooks: Hooks,
) -> dict:
    """Rank 0: final metrics file, confusion matrix PNG and the weights as mnv3 safetensors."""
    import json

    from mnv3.train.plots import plot_confusion
    from mnv3.weights.io import WeightsMeta, save_weights

    if not info.is_main or ev is None:
        return ev.to_dict() if ev is not None else {}
    final = ev.to_dict()
    from mnv3.utils.atomic import atomic_write_bytes

    atomic_write_bytes(run_dir / "final_metrics.json", json.dumps({"split": data.val_name, **final}, indent=2).encode())
    plot_confusion(ev.confusion, data.classes, run_dir / "confusion.png", f"{data.name} {data.val_name}: top-1 {100 * ev.top1:.2f} %")
    # a QAT network is saved as its fine-tuned float network (its int8 program comes from hooks.artifacts)
    net = model.to_float() if hasattr(model, "to_float") else model
    if own_model and getattr(net, "spec", None) is not None:
        meta = WeightsMeta(
            preprocessing=data.preprocessing,
            categories=list(data.classes),
            metrics={f"{data.name} {data.val_name} top-1": ev.top1, f"{data.name} {data.val_name} top-5": ev.top5},
            recipe=cfg.to_dict(),
            source=f"mnv3 train, run {run_dir.name}" + (" (quantization-aware training; float weights)" if cfg.qat else ""),
        )
        save_weights(net.to("cpu").to(memory_format=torch.contiguous_format), run_dir / "model.safetensors", meta)
    if hooks.artifacts is not None:
        size = data.preprocessing.crop
        hooks.artifacts(model, run_dir, torch.zeros(1, data.in_chans, size, size), log)
    return final
