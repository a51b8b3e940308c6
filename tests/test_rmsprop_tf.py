"""RMSpropTF against TensorFlow's RMSPropOptimizer formula (NumPy here, TF itself where installed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

from mnv3.train.config import TrainConfig
from mnv3.train.optim import build_optimizer
from mnv3.train.rmsprop_tf import RMSpropTF

LR, RHO, MOMENTUM, EPS, WD = 0.05, 0.9, 0.9, 1e-3, 1e-2
STEPS = 20


def lr_lambda(step: int) -> float:
    """A rate that changes every step (warm-up then decay), where lr-inside-momentum matters."""
    return (step + 1) / 5 if step < 5 else 0.9 ** (step - 4)


def make_problem(seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Initial values of two parameters and a gradient sequence (large and tiny entries) for each step."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    scales = [np.array([1e-3, 1e-2, 0.1, 1.0]), np.array([3.0, 1e-4, 0.3, 1e-2, 1.0])]
    grads = [[rng.standard_normal(x.shape) * s for x, s in zip(init, scales, strict=True)] for _ in range(STEPS)]
    return [x.astype(np.float32) for x in init], [[g.astype(np.float32) for g in gs] for gs in grads]


def numpy_tf_rmsprop(init: list[np.ndarray], grads: list[list[np.ndarray]], wds: list[float]) -> list[list[np.ndarray]]:
    """tf.compat.v1.train.RMSPropOptimizer in float64: the parameter values after each step."""
    var = [x.astype(np.float64) for x in init]
    ms = [np.ones_like(x) for x in var]
    mom = [np.zeros_like(x) for x in var]
    out = []
    for step, gs in enumerate(grads):
        lr = LR * lr_lambda(step)
        for i, g in enumerate(gs):
            g = g.astype(np.float64) + wds[i] * var[i]
            ms[i] = RHO * ms[i] + (1 - RHO) * g * g
            mom[i] = MOMENTUM * mom[i] + lr * g / np.sqrt(ms[i] + EPS)
            var[i] = var[i] - mom[i]
        out.append([v.copy() for v in var])
    return out


def torch_run(
    init: list[np.ndarray], grads: list[list[np.ndarray]], wds: list[float], foreach: bool, steps: range = range(STEPS)
) -> tuple[list[torch.Tensor], RMSpropTF, LambdaLR, list[list[np.ndarray]]]:
    """RMSpropTF with a LambdaLR over ``steps`` of the gradient sequence; the values after each step."""
    params = [torch.tensor(x, requires_grad=True) for x in init]
    groups = [{"params": [p], "weight_decay": wd} for p, wd in zip(params, wds, strict=True)]
    opt = RMSpropTF(groups, lr=LR, alpha=RHO, eps=EPS, momentum=MOMENTUM, foreach=foreach)
    sched = LambdaLR(opt, lr_lambda)
    return params, opt, sched, _steps(params, opt, sched, grads, steps)


def _steps(params: list[torch.Tensor], opt: RMSpropTF, sched: LambdaLR, grads: list[list[np.ndarray]], steps: range) -> list:
    """Apply the gradients of ``steps``, stepping the scheduler after each update."""
    out = []
    for step in steps:
        for p, g in zip(params, grads[step], strict=True):
            p.grad = torch.tensor(g)
        opt.step()
        sched.step()
        out.append([p.detach().numpy().copy() for p in params])
    return out


@pytest.mark.parametrize("foreach", [False, True])
def test_matches_numpy_tf_formula_with_momentum_weight_decay_and_changing_lr(foreach: bool) -> None:
    """20 steps of RMSpropTF equal the TF formula (ms from 1, eps in the root, lr in the buffer) to 1e-6."""
    init, grads = make_problem()
    wds = [WD, 0.0]
    ref = numpy_tf_rmsprop(init, grads, wds)
    _, opt, _, got = torch_run(init, grads, wds, foreach)
    for step in range(STEPS):
        for g, r in zip(got[step], ref[step], strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6, err_msg=f"step {step}")
    state = next(iter(opt.state.values()))
    assert set(state) == {"square_avg", "momentum_buffer", "step"} and float(state["step"]) == STEPS


def test_first_step_starts_from_ones_not_zeros() -> None:
    """One step from ms = 1: lr * g / sqrt(rho + (1 - rho) g^2 + eps), far smaller than torch's first step."""
    w = torch.zeros(3, requires_grad=True)
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    g = torch.tensor([1e-3, 1.0, -10.0])
    w.grad = g.clone()
    opt.step()
    expected = -0.1 * g / torch.sqrt(0.9 + 0.1 * g * g + 1e-3)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-6, atol=1e-9)


def test_state_dict_round_trip_continues_identically() -> None:
    """Saving optimizer and scheduler after 10 steps and loading them into fresh objects gives the same 10 next steps."""
    init, grads = make_problem(1)
    wds = [WD, WD]
    _, _, _, full = torch_run(init, grads, wds, foreach=False)
    params, opt, sched, first = torch_run(init, grads, wds, foreach=False, steps=range(10))
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    params2 = [torch.tensor(p.detach().numpy().copy(), requires_grad=True) for p in params]
    opt2 = RMSpropTF(
        [{"params": [p], "weight_decay": 0.0} for p in params2], lr=1.0, alpha=0.5, eps=1.0
    )  # overwritten by the load
    sched2 = LambdaLR(opt2, lr_lambda)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.param_groups[0]["eps"] == EPS and opt2.param_groups[0]["momentum"] == MOMENTUM
    rest = _steps(params2, opt2, sched2, grads, range(10, STEPS))
    for a, b in zip(first + rest, full, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_loads_a_torch_rmsprop_state_from_the_former_mapping() -> None:
    """A torch.optim.RMSprop state (eps = sqrt(eps_tf), lr outside the buffer) loads as TF's eps and buffer."""
    w = torch.ones(4, requires_grad=True)
    old = torch.optim.RMSprop([w], lr=0.02, alpha=0.9, eps=EPS**0.5, momentum=0.9)
    w.grad = torch.full((4,), 0.5)
    old.step()
    buf = old.state[w]["momentum_buffer"].clone()
    new = RMSpropTF([w], lr=1.0)
    new.load_state_dict(old.state_dict())
    group = new.param_groups[0]
    assert group["eps"] == pytest.approx(EPS) and group["alpha"] == 0.9 and "centered" not in group
    torch.testing.assert_close(new.state[w]["momentum_buffer"], 0.02 * buf)
    new.step()  # and it keeps training


def test_rejects_centered_and_bad_hyperparameters() -> None:
    """centered=True is not implemented and says so; negative values are refused."""
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="centered"):
        RMSpropTF([w], centered=True)
    with pytest.raises(ValueError, match="eps"):
        RMSpropTF([w], eps=-1.0)


def test_closure_is_evaluated_with_grad_enabled() -> None:
    """step(closure) returns the closure's loss and uses the gradients it computed."""
    w = torch.tensor([2.0], requires_grad=True)
    opt = RMSpropTF([w], lr=0.1, alpha=0.9, eps=1e-3)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 4.0 and float(w.detach()) == pytest.approx(
        2.0 - 0.1 * 4.0 / (0.9 + 0.1 * 16 + 1e-3) ** 0.5, rel=1e-6
    )


def test_build_optimizer_rmsprop_tf_is_rmsprop_tf() -> None:
    """optimizer="rmsprop_tf" builds RMSpropTF with the config's TF eps, decay, momentum and both weight-decay groups."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    cfg = TrainConfig(optimizer="rmsprop_tf", lr=0.01, lr_base_batch=None, eps=1e-3, weight_decay=1e-5, rmsprop_decay=0.9)
    opt = build_optimizer(model, cfg)
    assert type(opt) is RMSpropTF
    assert [(g["eps"], g["alpha"], g["momentum"], g["lr"]) for g in opt.param_groups] == [(1e-3, 0.9, cfg.momentum, 0.01)] * 2
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-5, 0.0]


def test_matches_tensorflow_rmsprop_optimizer() -> None:
    """Where TensorFlow is installed: tf.compat.v1.train.RMSPropOptimizer gives the same values."""
    tf = pytest.importorskip("tensorflow")
    init, grads = make_problem(2)
    wds = [0.0, 0.0]  # TF's optimizer has no weight decay of its own (an L2 term lives in the loss)
    _, _, _, got = torch_run(init, grads, wds, foreach=False)
    tf_vars = [tf.Variable(x) for x in init]
    lr_var = tf.Variable(LR * lr_lambda(0), dtype=tf.float32)
    opt = tf.compat.v1.train.RMSPropOptimizer(lr_var, decay=RHO, momentum=MOMENTUM, epsilon=EPS)
    for step in range(STEPS):
        lr_var.assign(LR * lr_lambda(step))
        opt.apply_gradients([(tf.constant(g), v) for g, v in zip(grads[step], tf_vars, strict=True)])
        for v, g in zip(tf_vars, got[step], strict=True):
            np.testing.assert_allclose(v.numpy(), g, rtol=1e-5, atol=1e-6, err_msg=f"step {step}")
