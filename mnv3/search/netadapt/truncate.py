"""Initialise a proposal from the current weights, truncated to the kept channels (paper §4.2, NetAdapt step 3).

The shrunk convolution keeps its filters of largest L1 norm; every tensor that reads or writes
those channels is sliced with the same indices: the BN after it, the depthwise conv and its BN,
the SE reduce (input) / expand (output) convs, and the next 1x1 conv's input channels. A residual
group has one keep-set, scored by the summed L1 norms of all its producers (the blocks' projection
convs, and the stem when it belongs to the group), shared by every block's output and every
reader. An SE squeeze that shrinks with its expansion keeps its reduce filters of largest L1 norm.
Nothing removed means every index kept: the network is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from mnv3.search.netadapt.proposals import input_widths, residual_groups, structure
from mnv3.spec.transforms import squeeze_width
from mnv3.spec.types import ModelSpec

Space = tuple[str, int]  # ("stem", 0), ("out", i), ("exp", i), ("sq", i); i is the 0-based block index


def l1_keep(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices (ascending) of the ``n`` largest scores; ties keep the lower index."""
    if n > scores.numel():
        raise ValueError(f"cannot keep {n} of {scores.numel()} channels (truncation only removes channels)")
    order = torch.argsort(-scores.double(), stable=True)[:n]
    return torch.sort(order).values


def filter_l1(weight: torch.Tensor) -> torch.Tensor:
    """L1 norm of each output filter of a conv / linear weight."""
    return weight.detach().abs().flatten(1).sum(1)


def _spaces(spec: ModelSpec) -> dict[str, tuple[Space | None, Space | None]]:
    """Every state-dict prefix with the channel spaces of its dim 0 and dim 1 (None: not sliced)."""
    out: dict[str, tuple[Space | None, Space | None]] = {"stem.conv": (("stem", 0), None), "stem.bn": (("stem", 0), None)}
    prev: Space = ("stem", 0)
    for i, (has_exp, _) in enumerate(structure(spec)):
        p = f"blocks.{i}"
        exp: Space = ("exp", i) if has_exp else prev
        if has_exp:
            out[f"{p}.expand.conv"] = (exp, prev)
            out[f"{p}.expand.bn"] = (exp, None)
        out[f"{p}.dw.conv"] = (exp, None)  # depthwise: (channels, 1, k, k)
        out[f"{p}.dw.bn"] = (exp, None)
        if spec.blocks[i].se:
            out[f"{p}.se.fc1"] = (("sq", i), exp)
            out[f"{p}.se.fc2"] = (exp, ("sq", i))
        out[f"{p}.project.conv"] = (("out", i), exp)
        out[f"{p}.project.bn"] = (("out", i), None)
        prev = ("out", i)
    out["head_conv.conv"] = (None, prev)
    return out


def keep_sets(state: dict[str, torch.Tensor], old: ModelSpec, new: ModelSpec) -> dict[Space, torch.Tensor]:
    """The kept channel indices of every channel space, from the L1 norms of the producing filters (§4.2)."""
    if structure(old) != structure(new) or len(old.blocks) != len(new.blocks):
        raise ValueError(f"{new.name} does not keep {old.name}'s residual groups and expansion layers; it cannot start from truncated weights")
    keep: dict[Space, torch.Tensor] = {}
    for g in residual_groups(old):
        idx = [b - 1 for b in g.blocks]
        width_old, width_new = old.blocks[idx[0]].out, new.blocks[idx[0]].out
        if any(new.blocks[i].out != width_new for i in idx) or (g.stem and new.stem.out != width_new):
            raise ValueError(f"{new.name}: the blocks of residual group {g.label} do not share one output width")
        if width_new == width_old:
            k = torch.arange(width_old)
        else:
            score = sum(filter_l1(state[f"blocks.{i}.project.conv.weight"]) for i in idx)
            if g.stem:
                score = score + filter_l1(state["stem.conv.weight"])
            k = l1_keep(score, width_new)  # type: ignore[arg-type]
        for i in idx:
            keep[("out", i)] = k
        if g.stem:
            keep[("stem", 0)] = k
    keep.setdefault(("stem", 0), torch.arange(old.stem.out))
    if new.stem.out != old.stem.out and not any(g.stem for g in residual_groups(old)):
        raise ValueError("the stem's width changes only with the residual group it belongs to")
    ins = input_widths(old)
    for i, (has_exp, _) in enumerate(structure(old)):
        ob, nb = old.blocks[i], new.blocks[i]
        if has_exp:
            w = state[f"blocks.{i}.expand.conv.weight"]
            keep[("exp", i)] = torch.arange(ob.exp) if nb.exp == ob.exp else l1_keep(filter_l1(w), nb.exp)
            exp_keep = keep[("exp", i)]
        else:
            exp_keep = keep[("stem", 0)] if i == 0 else keep[("out", i - 1)]
            assert ob.exp == ins[i]
        if ob.se:
            sq_old, sq_new = squeeze_width(old, ob.exp), squeeze_width(new, nb.exp)
            fc1 = state[f"blocks.{i}.se.fc1.weight"][:, exp_keep]
            keep[("sq", i)] = torch.arange(sq_old) if sq_new == sq_old else l1_keep(filter_l1(fc1), sq_new)
    return keep


def truncate_state(state: dict[str, torch.Tensor], old: ModelSpec, new: ModelSpec) -> dict[str, torch.Tensor]:
    """``state`` (of ``old``'s network) sliced to ``new``'s widths: a state dict ``build_network(new)`` loads with strict=True."""
    keep = keep_sets(state, old, new)
    spaces = _spaces(old)
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        prefix, _, leaf = name.rpartition(".")
        dims = spaces.get(prefix)
        if dims is None or t.dim() == 0:
            out[name] = t.clone()
            continue
        s0, s1 = dims
        v = t
        if s0 is not None:
            v = v.index_select(0, keep[s0])
        if s1 is not None and v.dim() > 1 and leaf == "weight":
            v = v.index_select(1, keep[s1])
        out[name] = v.clone()
    return out


def truncate(model: nn.Module, new: ModelSpec) -> nn.Module:
    """A network of ``new`` initialised from ``model``'s weights, truncated to the kept channels (§4.2)."""
    from mnv3.models.registry import build_network

    old: ModelSpec = model.spec  # type: ignore[assignment]
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    net = build_network(new)
    net.load_state_dict(truncate_state(state, old, new), strict=True)
    return net.train(model.training)
