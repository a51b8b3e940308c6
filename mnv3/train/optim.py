"""Optimizers and learning-rate schedules, built from a :class:`TrainConfig` with torch.optim.

``rmsprop_tf`` is the paper's TF RMSProp (§6.1.1) expressed with ``torch.optim.RMSprop``:

* TF divides by ``sqrt(ms + eps)``, torch by ``sqrt(ms) + eps``. We pass torch ``eps = sqrt(eps_tf)``
  (torchvision's recipe does the same: 0.0316 = sqrt(1e-3)). The denominators then agree to a
  relative ``sqrt(min(ms, eps_tf) / max(ms, eps_tf))``: exactly in the limits ms << eps_tf (small
  gradients, the usual case late in training) and ms >> eps_tf, and at worst by sqrt(2) at
  ms == eps_tf. Torch's step is never larger than TF's (sqrt(a) + sqrt(b) >= sqrt(a + b)).
* TF initialises the squared-gradient average to 1, torch to 0 (which makes the first steps
  ~1/sqrt(1 - rho) = 3.2x larger). We pre-fill torch's ``square_avg`` state with ones.
* TF applies the learning rate inside the momentum buffer, torch outside; they differ only while
  the learning rate changes, by the ratio of consecutive rates (<= 1 % per step here).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mnv3.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, decay_norm_bias: bool) -> list[dict]:
    """Two groups: conv/linear weights with weight decay, BN and bias parameters without (unless asked)."""
    if decay_norm_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def prefill_tf_rmsprop_state(opt: torch.optim.RMSprop) -> None:
    """Start RMSprop's squared-gradient average at 1, as TF's RMSPropOptimizer does."""
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                if group["momentum"] > 0:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["centered"]:
                    state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer at the batch-scaled learning rate."""
    groups = param_groups(model, cfg.weight_decay, cfg.wd_norm_bias)
    lr = cfg.effective_lr()
    if cfg.optimizer == "rmsprop_tf":
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=cfg.rmsprop_decay, eps=math.sqrt(cfg.eps), momentum=cfg.momentum)
        prefill_tf_rmsprop_state(opt)
        return opt
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
