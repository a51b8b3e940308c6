"""timm ``mobilenetv3_*`` (preset ``timm``) and ``tf_mobilenetv3_*`` (preset ``paper``) -> mnv3.

timm's layout (``timm/models/mobilenetv3.py``, ``_efficientnet_blocks.py``): ``conv_stem`` + ``bn1``;
``blocks.{stage}.{i}`` in stage order, each block one of three classes, told apart by its parameters:

- DepthwiseSeparableConv (``ds``, the first bottleneck): ``conv_dw``/``bn1``, [``se``], ``conv_pw``/``bn2``
  (here ``conv_pw`` is the projection);
- InvertedResidual (``ir``): ``conv_pw``/``bn1`` (expansion), ``conv_dw``/``bn2``, [``se``], ``conv_pwl``/``bn3``;
- ConvBnAct (``cn``, the last stage): ``conv``/``bn1``, the 960 / 576 head conv;

then ``conv_head`` (1x1 conv with bias on the pooled vector: mnv3's ``head_hidden`` Linear) and
``classifier``. SE: ``se.conv_reduce`` / ``se.conv_expand``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mnv3.weights.convert.common import Library, Mapped, group_by_index

MARKER = "conv_stem.weight"

# block class -> ((timm conv, timm bn, mnv3 unit), ...) in forward order
_DS = (("conv_dw", "bn1", "dw"), ("conv_pw", "bn2", "project"))
_IR = (("conv_pw", "bn1", "expand"), ("conv_dw", "bn2", "dw"), ("conv_pwl", "bn3", "project"))


def timm_to_mnv3(state: Mapping[str, torch.Tensor]) -> Mapped:
    """Rename a timm MobileNetV3 state dict to mnv3 keys (shapes are checked later)."""
    if MARKER not in state:
        raise ValueError(f"not a timm MobileNetV3 state dict: it has no {MARKER!r} key (first keys: {list(state)[:4]})")
    out = Mapped(Library.TIMM)
    used: set[str] = set()
    out.put_conv_bn("stem", state, "conv_stem", "bn1", used)
    flat: list[str] = []  # "blocks.s.i" in forward order
    stages = group_by_index(state, "blocks.")
    for s in sorted(stages):
        for i in sorted(group_by_index(stages[s], "")):
            flat.append(f"blocks.{s}.{i}")
    if not flat:
        raise ValueError("not a timm MobileNetV3 state dict: it has no 'blocks.S.I' keys")
    *bottlenecks, last = flat
    if f"{last}.conv.weight" not in state:
        raise ValueError(f"not a timm MobileNetV3 state dict: its last block {last} is not the ConvBnAct head conv ('{last}.conv.weight')")
    for n, src in enumerate(bottlenecks):
        if f"{src}.conv_pwl.weight" in state:
            units = _IR
        elif f"{src}.conv_dw.weight" in state and f"{src}.conv_pw.weight" in state:
            units = _DS
        else:
            raise ValueError(f"{src} is neither a timm InvertedResidual nor a DepthwiseSeparableConv block")
        for conv, bn, role in units:
            out.put_conv_bn(f"blocks.{n}.{role}", state, f"{src}.{conv}", f"{src}.{bn}", used)
            if role == "dw" and f"{src}.se.conv_reduce.weight" in state:
                for timm_fc, fc in (("conv_reduce", "fc1"), ("conv_expand", "fc2")):
                    for p in ("weight", "bias"):
                        key = f"{src}.se.{timm_fc}.{p}"
                        out.put(f"blocks.{n}.se.{fc}.{p}", state[key], key)
                        used.add(key)
    out.put_conv_bn("head_conv", state, f"{last}.conv", f"{last}.bn1", used)
    if "conv_head.weight" not in state:
        raise ValueError("the timm checkpoint has no conv_head (was it saved with features_only=True?); mnv3 needs the full classifier")
    w = state["conv_head.weight"]
    out.put("head_hidden.weight", w.reshape(w.shape[0], w.shape[1]) if w.ndim == 4 else w, "conv_head.weight")
    used.add("conv_head.weight")
    if "conv_head.bias" in state:
        out.put("head_hidden.bias", state["conv_head.bias"], "conv_head.bias")
        used.add("conv_head.bias")
    for p in ("weight", "bias"):
        if f"classifier.{p}" in state:
            out.put(f"classifier.{p}", state[f"classifier.{p}"], f"classifier.{p}")
            used.add(f"classifier.{p}")
    left = [k for k in state if k not in used]
    if left:
        raise ValueError(f"unexpected keys in the timm checkpoint (not a mobilenetv3_* / tf_mobilenetv3_* model?): {left[:5]}")
    return out
