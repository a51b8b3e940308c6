"""Where NetAdapt's proposals are fine-tuned and scored (paper §4.2, steps 4-5): in this process, or as Ray tasks.

A :class:`Job` is plain data (spec dict, truncated state dict, training config dict), so it runs the
same anywhere; :func:`finetune` runs it through mnv3's training engine (a
:class:`mnv3.train.engine.Trainer`: its data, optimizer, ``fit`` and ``validate``) on the held-out
part of the training set (``val_split``), never on the test split. An :class:`Executor` maps
:func:`finetune` over jobs and returns the results in job order; Ray does the scheduling for
:class:`RayExecutor` (https://docs.ray.io/en/latest/ray-core/tasks.html).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

EXECUTORS = ("local", "ray")


@dataclass
class Job:
    """One network to fine-tune for ``steps`` steps and score: its spec, its starting weights, the training config."""

    tag: str
    spec: dict[str, Any]
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    steps: int
    bn_batches: int = 0  # BN running statistics recomputed over this many training batches before scoring (0: kept)


@dataclass
class JobResult:
    """A fine-tuned network's held-out accuracy (the task's primary metric), its weights and how long it took."""

    tag: str
    accuracy: float
    state: dict[str, torch.Tensor] = field(repr=False)
    steps: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


def finetune(job: Job) -> JobResult:
    """Fine-tune ``job``'s network for ``job.steps`` steps with the engine's Trainer, then evaluate it on the held-out split (§4.2)."""
    from mnv3.models.registry import build_network
    from mnv3.spec.serialize import spec_from_dict
    from mnv3.train.config import config_from_dict
    from mnv3.train.distributed import init_distributed
    from mnv3.train.engine import Hooks, RunLog, RunStatus, StopFlag, Trainer

    t0 = time.perf_counter()
    net = build_network(spec_from_dict(job.spec))
    net.load_state_dict(job.state, strict=True)
    base = config_from_dict(job.config)
    if base.val_split <= 0:
        raise ValueError("NetAdapt scores proposals on a held-out part of the training set: val_split must be > 0")
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="mnv3-netadapt-") as tmp:
        cfg = dataclasses.replace(base, output=tmp, name=job.tag, max_steps=max(job.steps, 1), progress=False, tensorboard=False)
        info, device = init_distributed(cfg.device)
        try:
            trainer = Trainer(cfg, info, device, RunLog(False), Hooks(), net)
            trainer.run_dir.mkdir(parents=True, exist_ok=True)
            if job.steps > 0:
                with StopFlag() as stop:
                    status, message, _ = trainer.fit(stop)
                if status is RunStatus.INTERRUPTED:
                    raise KeyboardInterrupt
                if status is not RunStatus.COMPLETED:
                    raise RuntimeError(f"fine-tuning {job.tag} failed: {message}")
            trainer.recalibrate_bn(job.bn_batches)
            ev = trainer.validate()
            assert ev is not None  # val_split > 0 gives a held-out split
        finally:
            torch.set_num_threads(threads)
    model = trainer.eval_model
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    scalars = {k: v for k, v in ev.scalars().items() if isinstance(v, (int, float))}
    return JobResult(job.tag, float(ev.primary), state, job.steps, time.perf_counter() - t0, scalars, list(trainer.data.classes))


class Executor(Protocol):
    """Runs a function over jobs and returns the results in job order."""

    name: str

    def map(self, fn: Callable[[Job], JobResult], jobs: Sequence[Job]) -> list[JobResult]: ...


class LocalExecutor:
    """Every job in this process, one after the other (the default)."""

    name = "local"

    def map(self, fn: Callable[[Job], JobResult], jobs: Sequence[Job]) -> list[JobResult]:
        """``[fn(j) for j in jobs]``."""
        return [fn(j) for j in jobs]


class RayExecutor:
    """Each job as a Ray task on a cluster (``address``; None: the Ray already initialised here, else a local one)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus_per_job: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs Ray: pip install 'mnv3[search]' (ray[default])") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        self.num_cpus = num_cpus_per_job

    def map(self, fn: Callable[[Job], JobResult], jobs: Sequence[Job]) -> list[JobResult]:
        """Submit every job, then wait for all of them (Ray schedules them on the cluster's CPUs)."""
        remote = self.ray.remote(num_cpus=self.num_cpus, max_retries=0)(fn)
        return list(self.ray.get([remote.remote(j) for j in jobs]))


def make_executor(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        if address is not None:
            raise ValueError("--ray-address applies to --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {name!r}; expected one of {list(EXECUTORS)}")
