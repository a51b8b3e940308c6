"""One evaluation pass of any task: eval mode, autocast, the task's meter, totals summed over processes.

Under torchrun each process evaluates a disjoint shard (no padding) and the meters' totals are summed.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from mnv3.tasks.base import Evaluation, Task
from mnv3.tasks.classification import EvalResult
from mnv3.train.distributed import all_gather_object, all_reduce_

__all__ = ["EvalResult", "autocast", "evaluate"]


def autocast(device: torch.device, precision: str):
    """The autocast context for ``precision`` (fp32: none; fp16 only on CUDA)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, task: Task, device: torch.device, precision: str = "fp32", channels_last: bool = False
) -> Evaluation:
    """One pass of ``task``'s predictions in eval mode through its meter; returns the result over all processes' shards."""
    meter = task.meter()
    was_training = model.training
    model.eval()
    try:
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = task.targets_to(y, device)
            with autocast(device, precision):
                out = task.predict(model, x)
            meter.update(out, y)
    finally:
        model.train(was_training)
    meter.reduce(all_reduce_, all_gather_object)
    return meter.result()
