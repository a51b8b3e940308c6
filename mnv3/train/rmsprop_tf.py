"""TensorFlow's RMSProp as a torch optimizer: the update the paper trained with (§6.1.1).

"Searching for MobileNetV3" (Howard et al., ICCV 2019), §6.1.1: "standard tensorflow RMSPropOptimizer
with 0.9 momentum"; TF-slim's MobileNet training scripts use RMSProp decay 0.9 as well. The update is
that of ``tf.compat.v1.train.RMSPropOptimizer`` (non-centered), whose kernel is ``ApplyRMSProp``, see
https://github.com/tensorflow/tensorflow/blob/master/tensorflow/python/training/rmsprop.py::

    ms  <- rho * ms + (1 - rho) * g^2                   (ms starts at ONE, not zero)
    mom <- momentum * mom + lr * g / sqrt(ms + eps)     (eps inside the root, lr inside the buffer)
    var <- var - mom

It differs from ``torch.optim.RMSprop`` in the three places noted: torch starts ``ms`` at zero (its
first steps are ~1/sqrt(1 - rho) = 3.2x larger), divides by ``sqrt(ms) + eps`` and multiplies the
momentum buffer by the current lr (different from TF while the lr changes). ``weight_decay`` is an L2
term added to the gradient (``g += weight_decay * p``), as torch's RMSprop and a TF L2 regulariser
in the loss do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

# Keys that torch.optim.RMSprop writes into its param groups and RMSpropTF does not use.
_TORCH_RMSPROP_ONLY = ("centered", "capturable", "foreach", "maximize", "differentiable")


class RMSpropTF(Optimizer):
    """TF1 ``RMSPropOptimizer``: ``ms`` from 1, ``mom = m*mom + lr*g/sqrt(ms + eps)``, ``p -= mom``.

    ``alpha`` is TF's ``decay`` (rho), ``eps`` TF's ``epsilon`` (inside the square root). State per
    parameter: ``square_avg`` (ms), ``momentum_buffer`` (mom, which includes the lr) and ``step``.
    ``foreach`` (default: when every parameter is on CUDA) batches the update over a group's tensors.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        alpha: float = 0.9,
        eps: float = 1e-10,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        foreach: bool | None = None,
    ) -> None:
        """Hyperparameters as TF names them: ``alpha`` = decay, ``eps`` = epsilon (TF's default 1e-10)."""
        if centered:
            raise ValueError("RMSpropTF: centered=True (TF's centered RMSProp) is not implemented")
        if lr < 0.0:
            raise ValueError(f"RMSpropTF: invalid learning rate {lr}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"RMSpropTF: invalid alpha (decay) {alpha}, expected 0 <= alpha <= 1")
        if eps < 0.0:
            raise ValueError(f"RMSpropTF: invalid eps {eps}")
        if momentum < 0.0:
            raise ValueError(f"RMSpropTF: invalid momentum {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"RMSpropTF: invalid weight_decay {weight_decay}")
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay, "momentum": momentum, "foreach": foreach}
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state; one written by ``torch.optim.RMSprop`` under mnv3's old mapping is converted."""
        groups = state_dict.get("param_groups", [])
        if any("centered" in g for g in groups):
            state_dict = _from_torch_rmsprop(state_dict)
        super().load_state_dict(state_dict)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, square_avgs, bufs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                square_avgs.append(state["square_avg"])
                bufs.append(state["momentum_buffer"])
                steps.append(state["step"])
            if not params:
                continue
            foreach = group.get("foreach")
            if foreach is None:
                foreach = all(p.is_cuda for p in params)
            update = _update_foreach if foreach else _update_single
            hyper = (group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"])
            update(params, grads, square_avgs, bufs, *hyper)
            for s in steps:
                s += 1
        return loss


def _update_single(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    bufs: list[Tensor],
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
) -> None:
    """The TF update, one tensor at a time."""
    for p, g, ms, mom in zip(params, grads, square_avgs, bufs, strict=True):
        if weight_decay != 0.0:
            g = g.add(p, alpha=weight_decay)
        ms.mul_(alpha).addcmul_(g, g, value=1.0 - alpha)
        mom.mul_(momentum).addcdiv_(g, ms.add(eps).sqrt_(), value=lr)
        p.sub_(mom)


def _update_foreach(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    bufs: list[Tensor],
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
) -> None:
    """The TF update with torch's multi-tensor ``_foreach`` kernels (the same arithmetic)."""
    if weight_decay != 0.0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(square_avgs, alpha)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1.0 - alpha)
    denom = torch._foreach_add(square_avgs, eps)
    torch._foreach_sqrt_(denom)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_addcdiv_(bufs, grads, denom, value=lr)
    torch._foreach_sub_(params, bufs)


def _from_torch_rmsprop(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A ``torch.optim.RMSprop`` state from mnv3's former ``rmsprop_tf`` mapping, in RMSpropTF's terms.

    That mapping passed torch ``eps = sqrt(eps_tf)`` and a ``square_avg`` pre-filled with ones; torch's
    momentum buffer excludes the lr, TF's includes it (scaled here by the group's current lr).
    """
    if any(g.get("centered") for g in state_dict["param_groups"]):
        raise ValueError("RMSpropTF: cannot load a centered torch.optim.RMSprop state")
    groups = []
    state = {k: dict(v) for k, v in state_dict["state"].items()}
    for g in state_dict["param_groups"]:
        new = {k: v for k, v in g.items() if k not in _TORCH_RMSPROP_ONLY}
        new["eps"] = float(g["eps"]) ** 2
        new["foreach"] = None
        groups.append(new)
        for pid in g["params"]:
            s = state.get(pid)
            if not s:
                continue
            buf = s.get("momentum_buffer")
            s["momentum_buffer"] = buf * g["lr"] if buf is not None else torch.zeros_like(s["square_avg"])
    return {"state": state, "param_groups": groups}
