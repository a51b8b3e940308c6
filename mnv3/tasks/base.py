"""The task interface: what the training engine and the evaluators need to know of a task, and no more.

A task turns a network's outputs into a loss, accumulates metrics over an evaluation pass and writes its
reports. The engine (:mod:`mnv3.train.engine`) runs the loop, the checkpoints and the run phases for any
task; classification is the first (:mod:`mnv3.tasks.classification`), detection and segmentation plug in
the same way (registered in :data:`mnv3.tasks.TASKS`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


class Evaluation(ABC):
    """The result of one evaluation pass: scalars for the metric log, a JSON report, the primary metric."""

    count: int

    @property
    @abstractmethod
    def primary(self) -> float:
        """The metric that picks ``best.pt`` (higher is better)."""

    @abstractmethod
    def scalars(self) -> dict[str, float]:
        """The numbers logged to ``metrics.jsonl`` and TensorBoard after each evaluation."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (what ``final_metrics.json`` and ``mnv3 eval`` write)."""

    def headline(self) -> dict[str, float]:
        """The metrics a model's weights file carries, by their usual names (default: the scalars)."""
        return self.scalars()


class Meter(ABC):
    """Accumulates a task's metrics over batches; its totals are sums, so processes add them up exactly."""

    @abstractmethod
    def update(self, outputs: Any, targets: Any) -> None:
        """Add one batch (the network's outputs, possibly in reduced precision; targets as the dataset gives them)."""

    def totals(self) -> list[torch.Tensor]:
        """Tensor accumulators that :meth:`reduce` sums over processes (none by default)."""
        return []

    def reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor], all_gather: Callable[[Any], list[Any]]) -> None:
        """Combine the processes' shards before :meth:`result`: sums :meth:`totals` in place; a meter that keeps
        lists (detections for COCO evaluation) gathers them with ``all_gather`` instead."""
        for t in self.totals():
            all_reduce(t)

    @abstractmethod
    def result(self) -> Evaluation:
        """The metrics of everything added so far (after the totals are reduced)."""


class Task(ABC):
    """One kind of problem: loss, metrics, log line and reports for a network's outputs."""

    name: ClassVar[str]
    primary_metric: ClassVar[str]  # the name of Evaluation.primary in logs and status files

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: Any, classes: Sequence[str]) -> Task:
        """The task of a training configuration (the fields it reads are the task's own) over ``classes``."""

    classes: list[str]

    @property
    def num_outputs(self) -> int:
        """The class count the network predicts (detection adds the background, class 0)."""
        return len(self.classes)

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss of a batch (a scalar)."""

    def predict(self, model: nn.Module, images: torch.Tensor) -> Any:
        """What the meter scores for a batch in eval mode: the network's outputs (detection decodes and runs NMS)."""
        return model(images)

    def targets_to(self, targets: Any, device: torch.device) -> Any:
        """Move a batch's targets to ``device`` (a tensor by default; tasks with structured targets override)."""
        return targets.to(device, non_blocking=True)

    @abstractmethod
    def meter(self) -> Meter:
        """A fresh metric accumulator for one evaluation pass."""

    def batch_transform(self) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
        """A transform of whole training batches (MixUp / CutMix for classification); None when there is none."""
        return None

    @abstractmethod
    def summary(self, ev: Evaluation) -> str:
        """One line for the log (e.g. ``top-1 91.20 %, top-5 99.80 %``)."""

    @abstractmethod
    def write_reports(self, ev: Evaluation, out_dir: Path, title: str, suffix: str = "") -> list[Path]:
        """The task's report files of an evaluation (figures, named by the task, ``suffix`` before the extension),
        each written whole or not at all."""
