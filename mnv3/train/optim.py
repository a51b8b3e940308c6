"""Optimizers and learning-rate schedules, built from a :class:`TrainConfig`.

``rmsprop_tf`` is the paper's TF RMSProp (§6.1.1), :class:`mnv3.train.rmsprop_tf.RMSpropTF`: TF's
update exactly (squared average started at 1, ``eps`` inside the square root, lr inside the momentum
buffer). ``cfg.eps`` is passed as is, so for ``rmsprop_tf`` it is TF's epsilon (the recipes' 1e-3);
for ``rmsprop`` (torch.optim.RMSprop, eps outside the root) and ``adamw`` it is torch's.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mnv3.train.config import TrainConfig
from mnv3.train.rmsprop_tf import RMSpropTF


def param_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool) -> list[dict]:
    """Two groups: conv/linear weights with weight decay, BN and bias parameters without (unless asked)."""
    if decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer at the batch-scaled learning rate."""
    groups = param_groups(model, cfg.weight_decay, cfg.wd_norm_bias)
    lr = cfg.effective_lr()
    if cfg.optimizer == "rmsprop_tf":
        return RMSpropTF(groups, lr=lr, alpha=cfg.rmsprop_decay, eps=cfg.eps, momentum=cfg.momentum)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=cfg.rmsprop_decay, eps=cfg.eps, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=cfg.eps)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then step / cosine / constant."""
    epoch = step / steps_per_epoch
    total = cfg.epochs
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * epoch / cfg.warmup_epochs
    t = epoch - cfg.warmup_epochs
    if cfg.schedule == "step":
        return cfg.decay_rate ** math.floor(t / cfg.decay_epochs)
    if cfg.schedule == "cosine":
        span = max(total - cfg.warmup_epochs, 1e-9)
        progress = min(max(t / span, 0.0), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(opt: torch.optim.Optimizer, steps_per_epoch: int, cfg: TrainConfig) -> LambdaLR:
    """A per-step LambdaLR over :func:`lr_factor`; its state (the step count) goes into checkpoints."""
    return LambdaLR(opt, lambda s: lr_factor(s, steps_per_epoch, cfg))
