"""torchvision ``mobilenet_v3_large`` / ``mobilenet_v3_small`` state dicts <-> mnv3 (preset ``torchvision``).

torchvision's layout (``torchvision/models/mobilenetv3.py``): ``features.0`` is the stem
Conv2dNormActivation (``0`` conv, ``1`` BN), ``features.1..N`` are InvertedResidual blocks whose
``block`` Sequential holds, in order, [expand], depthwise, [SqueezeExcitation ``fc1``/``fc2``],
project; the last ``features`` entry is the 960 / 576 head conv; ``classifier.0`` is the 1280 /
1024 Linear and ``classifier.3`` the class Linear. The walk follows that order, never key names
of other libraries, and the reverse map rebuilds exactly these keys (a bit-exact round trip).

``ssdlite320_mobilenet_v3_large`` (``torchvision/models/detection/ssdlite.py``, paper §6.3) splits the
backbone at C4: ``backbone.features.0`` holds the stem, the blocks before the C4 block and that
block's expansion (``block[0]``), ``backbone.features.1`` the rest of the C4 block (``block[1:]``,
original indices kept), the later blocks and the head conv. Those keys are put back into the
classifier layout and walked as above; ``backbone.extra.{i}.{0,1,2}`` are the extra layers and
``head.{regression,classification}_head.module_list.{k}`` (``0`` depthwise conv+BN, ``1`` 1x1 conv)
the predictors.

``lraspp_mobilenet_v3_large`` (``torchvision/models/segmentation/lraspp.py``, paper §6.4) holds the
dilated backbone's ``features`` under ``backbone.{i}`` (an ``IntermediateLayerGetter``) and the head
under ``classifier``: ``cbr.{0,1}`` (1x1 conv + BN), ``scale.1`` (the gate's 1x1 conv, after the
pool), ``low_classifier`` and ``high_classifier``; it is told by its ``classifier.cbr.0.weight`` key.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mnv3.spec.tables import LARGE, SMALL
from mnv3.spec.types import Activation, ModelSpec, Padding
from mnv3.weights.convert.common import BN_FIELDS, Library, Mapped, group_by_index

MARKER = "features.0.0.weight"  # present in every torchvision MobileNetV3 state dict
SSDLITE_MARKER = "backbone.features.0.0.0.weight"  # torchvision's SSDLite: the stem conv inside the first C4 half
LRASPP_MARKER = "classifier.cbr.0.weight"  # torchvision's LR-ASPP head: the 1x1 conv of branch A
_SSDLITE_EXTRA_UNITS = ("reduce", "dw", "expand")
_SSDLITE_HEADS = (("regression_head", "box_head"), ("classification_head", "cls_head"))


def _is_conv_bn(unit: Mapping[str, torch.Tensor]) -> bool:
    return "0.weight" in unit and "1.running_mean" in unit


def torchvision_to_mnv3(state: Mapping[str, torch.Tensor]) -> Mapped:
    """Rename a torchvision MobileNetV3 (or SSDLite-MobileNetV3) state dict to mnv3 keys (shapes are checked later)."""
    if SSDLITE_MARKER in state:
        return _ssdlite_to_mnv3(state)
    if LRASPP_MARKER in state:
        return _lraspp_to_mnv3(state)
    if MARKER not in state:
        raise ValueError(f"not a torchvision MobileNetV3 state dict: it has no {MARKER!r} key (first keys: {list(state)[:4]})")
    out = Mapped(Library.TORCHVISION)
    used: set[str] = set()
    features = group_by_index(state, "features.")
    order = sorted(features)
    is_block = [any(k.startswith("block.") for k in features[i]) for i in order]
    if len(order) < 3 or is_block[0] or is_block[-1] or not all(is_block[1:-1]):
        raise ValueError("not a torchvision MobileNetV3 state dict: expected features.0 = stem, features.1..N = blocks, last = head conv")
    out.put_conv_bn("stem", state, f"features.{order[0]}.0", f"features.{order[0]}.1", used)
    for n, i in enumerate(order[1:-1]):
        units = group_by_index(features[i], "block.")
        conv_bns: list[tuple[int, Mapping[str, torch.Tensor]]] = []
        for j in sorted(units):
            src = f"features.{i}.block.{j}"
            if "fc1.weight" in units[j]:
                for fc in ("fc1", "fc2"):
                    for p in ("weight", "bias"):
                        out.put(f"blocks.{n}.se.{fc}.{p}", units[j][f"{fc}.{p}"], f"{src}.{fc}.{p}")
                        used.add(f"{src}.{fc}.{p}")
            elif _is_conv_bn(units[j]):
                conv_bns.append((j, units[j]))
            else:
                raise ValueError(f"not a torchvision MobileNetV3 state dict: {src} is neither a conv+BN nor a squeeze-excite")
        if len(conv_bns) not in (2, 3):
            raise ValueError(f"features.{i} has {len(conv_bns)} conv+BN units; a torchvision bottleneck has 2 or 3")
        roles = ("expand", "dw", "project") if len(conv_bns) == 3 else ("dw", "project")
        for role, (j, _) in zip(roles, conv_bns, strict=True):
            src = f"features.{i}.block.{j}"
            out.put_conv_bn(f"blocks.{n}.{role}", state, f"{src}.0", f"{src}.1", used)
    out.put_conv_bn("head_conv", state, f"features.{order[-1]}.0", f"features.{order[-1]}.1", used)
    for src_idx, dst in (("0", "head_hidden"), ("3", "classifier")):
        for p in ("weight", "bias"):
            key = f"classifier.{src_idx}.{p}"
            if key in state:
                out.put(f"{dst}.{p}", state[key], key)
                used.add(key)
    left = [k for k in state if k not in used]
    if left:
        raise ValueError(f"unexpected keys in the torchvision checkpoint (not a plain float mobilenet_v3?): {left[:5]}")
    return out


def _ssdlite_backbone(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The SSDLite backbone's tensors under the classifier's ``features.{i}`` keys, with each one's SSDLite key."""
    first = group_by_index(state, "backbone.features.0.")
    if not first or not group_by_index(state, "backbone.features.1."):
        raise ValueError("not a torchvision SSDLite state dict: expected backbone.features.0 (up to C4) and backbone.features.1 (after it)")
    c4 = max(first)  # the C4 block's index in mobilenet_v3's features: its expansion closes features.0
    renamed: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for key, value in state.items():
        if not key.startswith("backbone.features."):
            continue
        half, _, rest = key[len("backbone.features.") :].partition(".")
        idx, _, tail = rest.partition(".")
        if half == "0":
            new = f"features.{c4}.block.0.{tail}" if int(idx) == c4 else f"features.{rest}"
        elif idx == "0":
            new = f"features.{c4}.block.{tail}"  # block[1:] keeps the block's own indices
        else:
            new = f"features.{c4 + int(idx)}.{tail}"
        renamed[new] = value
        source[new] = key
    return renamed, source


def _backbone(renamed: dict[str, torch.Tensor], source: dict[str, str]) -> Mapped:
    """A detector's or segmenter's backbone, put back under the classifier's ``features.{i}`` keys, mapped; origins name the file's keys."""
    backbone = torchvision_to_mnv3(renamed)
    out = Mapped(Library.TORCHVISION)
    for key, value in backbone.tensors.items():
        src = backbone.origin[key]
        out.put(key, value, source.get(src, src))
    return out


def _ssdlite_to_mnv3(state: Mapping[str, torch.Tensor]) -> Mapped:
    """torchvision ``ssdlite320_mobilenet_v3_large`` keys -> mnv3 SSDLite keys (backbone, extra layers, predictors)."""
    renamed, source = _ssdlite_backbone(state)
    out = _backbone(renamed, source)
    used = set(source.values())
    for i, units in sorted(group_by_index(state, "backbone.extra.").items()):
        for j, role in enumerate(_SSDLITE_EXTRA_UNITS):
            src = f"backbone.extra.{i}.{j}"
            if f"{j}.0.weight" not in units:
                raise ValueError(f"not a torchvision SSDLite state dict: {src} is not a conv+BN unit")
            out.put_conv_bn(f"extra.{i}.{role}", state, f"{src}.0", f"{src}.1", used)
    for tv_head, head in _SSDLITE_HEADS:
        prefix = f"head.{tv_head}.module_list."
        for k in sorted(group_by_index(state, prefix)):
            out.put_conv_bn(f"{head}.{k}.dw", state, f"{prefix}{k}.0.0", f"{prefix}{k}.0.1", used)
            out.take(f"{head}.{k}.pred", state, f"{prefix}{k}.1", ("weight", "bias"), used)
    left = [k for k in state if k not in used]
    if left:
        raise ValueError(f"unexpected keys in the torchvision SSDLite checkpoint: {left[:5]}")
    return out


def _lraspp_to_mnv3(state: Mapping[str, torch.Tensor]) -> Mapped:
    """torchvision ``lraspp_mobilenet_v3_large`` keys -> mnv3 LR-ASPP keys (paper §6.4): ``backbone.{i}`` -> features, ``classifier`` -> ``seg_head``."""
    source = {f"features.{k[len('backbone.'):]}": k for k in state if k.startswith("backbone.")}
    if not source:
        raise ValueError("not a torchvision LR-ASPP state dict: it has classifier.cbr but no backbone.{i} keys")
    out = _backbone({new: state[old] for new, old in source.items()}, source)
    used = set(source.values())
    out.put_conv_bn("seg_head.cbr", state, "classifier.cbr.0", "classifier.cbr.1", used)
    out.take("seg_head.scale", state, "classifier.scale.1", ("weight",), used)
    for name in ("low_classifier", "high_classifier"):
        out.take(f"seg_head.{name}", state, f"classifier.{name}", ("weight", "bias"), used)
    left = [k for k in state if k not in used]
    if left:
        raise ValueError(f"unexpected keys in the torchvision LR-ASPP checkpoint (aux classifier?): {left[:5]}")
    return out


def check_torchvision_expressible(spec: ModelSpec) -> None:
    """Raise ValueError unless torchvision's ``mobilenet_v3_*`` builder can express ``spec`` exactly."""
    c = spec.conventions
    table = LARGE if len(spec.blocks) == len(LARGE.blocks) else SMALL
    same_rows = len(spec.blocks) == len(table.blocks) and all(
        (b.kernel, b.se, b.act) == (t.kernel, t.se, t.act) for b, t in zip(spec.blocks, table.blocks, strict=True)
    )
    problems = []
    if spec.detection is not None:
        problems.append("it is an SSDLite detector (mnv3 writes torchvision's classifier format only)")
    if spec.segmentation is not None:
        problems.append("it is an LR-ASPP segmenter (mnv3 writes torchvision's classifier format only)")
    if c.padding is not Padding.SYMMETRIC or c.bn_eps != 1e-3:
        problems.append(f"its conventions (padding {c.padding.value}, BN eps {c.bn_eps}) differ from torchvision's (symmetric, 1e-3)")
    if not same_rows or spec.stem.act is not Activation.HSWISH or spec.head.act is not Activation.HSWISH:
        problems.append("its kernels / SE / activations are not torchvision's Large or Small table (minimalistic nets have no torchvision form)")
    if problems:
        raise ValueError(f"{spec.name} cannot be written in torchvision's format: {'; '.join(problems)}. Build it with preset='torchvision'.")


def mnv3_to_torchvision(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict torchvision's ``mobilenet_v3_*(width_mult=...)`` loads, same tensors (bit-exact)."""
    spec: ModelSpec = model.spec  # type: ignore[assignment]
    check_torchvision_expressible(spec)
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}

    def conv_bn(src: str, dst: str) -> None:
        out[f"{dst}.0.weight"] = sd[f"{src}.conv.weight"]
        for f in (*BN_FIELDS, "num_batches_tracked"):
            out[f"{dst}.1.{f}"] = sd[f"{src}.bn.{f}"]

    conv_bn("stem", "features.0")
    for i, block in enumerate(model.blocks):  # type: ignore[attr-defined]
        j = 0
        dst = f"features.{i + 1}.block"
        if block.expand is not None:
            conv_bn(f"blocks.{i}.expand", f"{dst}.{j}")
            j += 1
        conv_bn(f"blocks.{i}.dw", f"{dst}.{j}")
        j += 1
        if block.se is not None:
            for fc in ("fc1", "fc2"):
                for p in ("weight", "bias"):
                    out[f"{dst}.{j}.{fc}.{p}"] = sd[f"blocks.{i}.se.{fc}.{p}"]
            j += 1
        conv_bn(f"blocks.{i}.project", f"{dst}.{j}")
    conv_bn("head_conv", f"features.{len(spec.blocks) + 1}")
    for p in ("weight", "bias"):
        out[f"classifier.0.{p}"] = sd[f"head_hidden.{p}"]
    if spec.num_classes > 0:
        for p in ("weight", "bias"):
            out[f"classifier.3.{p}"] = sd[f"classifier.{p}"]
    return out
