"""Typed per-layer keys of a latency lookup table, derived by walking a spec (paper §4.2; NetAdapt's layer-wise tables).

A network's latency is looked up layer by layer: the stem, every bottleneck (Tables 1-2 rows), the
960 / 576 head conv, the pooling, the 1280 / 1024 hidden layer and the classifier (§5.1). Each is
a frozen :class:`LayerKey` holding everything that decides what the layer computes: kind, input
height / width / channels, expansion and output widths, kernel, stride, dilation, SE and its
squeeze width, activation, and the padding convention where it changes the graph (TF 'SAME' on
strided convs only). Two layers with equal keys build the same module, so they share one entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from mnv3.spec.transforms import squeeze_width
from mnv3.spec.types import Activation, ModelSpec, Padding


class LayerKind(str, Enum):
    """What a lookup-table entry times (§5.1's last stage is split into its four layers)."""

    STEM = "stem"
    BOTTLENECK = "bottleneck"
    HEAD_CONV = "head_conv"  # 1x1 conv + BN + act before pooling (960 / 576)
    POOL = "pool"  # global average pooling + flatten
    HIDDEN = "hidden"  # the 1x1 hidden layer after pooling (a Linear, no BN) + act (1280 / 1024)
    CLASSIFIER = "classifier"  # the final Linear
    OVERHEAD = "overhead"  # a near-empty model on the network input: the runtime's fixed per-call cost


@dataclass(frozen=True)
class LayerKey:
    """One layer configuration at one input size (the unit of a lookup table; fields unused by a kind are 0 / None)."""

    kind: LayerKind
    in_h: int
    in_w: int
    in_ch: int
    out: int
    exp: int = 0
    kernel: int = 0
    stride: int = 1
    dilation: int = 1
    se: bool = False
    squeeze: int = 0
    act: Activation | None = None
    padding: Padding = Padding.SYMMETRIC

    def label(self) -> str:
        """A short human-readable description, e.g. ``bottleneck 28x28 40->120->40 k5 s1 SE(32) relu``."""
        size = f"{self.in_h}x{self.in_w}"
        act = self.act.value if self.act is not None else "linear"
        k = self.kind
        if k is LayerKind.BOTTLENECK:
            se = f" SE({self.squeeze})" if self.se else ""
            dil = f" d{self.dilation}" if self.dilation != 1 else ""
            pad = " same" if self.padding is Padding.TF_SAME else ""
            return f"bottleneck {size} {self.in_ch}->{self.exp}->{self.out} k{self.kernel} s{self.stride}{dil}{se} {act}{pad}"
        if k is LayerKind.STEM:
            pad = " same" if self.padding is Padding.TF_SAME else ""
            return f"stem {size} {self.in_ch}->{self.out} k{self.kernel} s{self.stride} {act}{pad}"
        if k is LayerKind.HEAD_CONV:
            return f"head_conv {size} {self.in_ch}->{self.out} 1x1 {act}"
        if k is LayerKind.POOL:
            return f"pool {size} {self.in_ch}"
        if k is LayerKind.OVERHEAD:
            return f"overhead {size} {self.in_ch}"
        return f"{k.value} {self.in_ch}->{self.out} {act}"

    def to_row(self) -> dict[str, Any]:
        """Plain column values (enums as their strings, bool as 0 / 1) for the SQLite store."""
        row: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            row[f.name] = v.value if isinstance(v, Enum) else int(v) if isinstance(v, bool) else v
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LayerKey:
        """The key :meth:`to_row` wrote."""
        return cls(
            kind=LayerKind(row["kind"]),
            in_h=int(row["in_h"]),
            in_w=int(row["in_w"]),
            in_ch=int(row["in_ch"]),
            out=int(row["out"]),
            exp=int(row["exp"]),
            kernel=int(row["kernel"]),
            stride=int(row["stride"]),
            dilation=int(row["dilation"]),
            se=bool(row["se"]),
            squeeze=int(row["squeeze"]),
            act=Activation(row["act"]) if row["act"] is not None else None,
            padding=Padding(row["padding"]),
        )


KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LayerKey))


@dataclass(frozen=True)
class Layer:
    """A layer of one network: its place (``stem``, ``block3``, ``head_conv``, ...) and its key."""

    name: str
    key: LayerKey


def conv_out_size(size: int, kernel: int, stride: int, dilation: int, padding: Padding) -> int:
    """Output size of a ConvBnAct along one dimension (TF 'SAME' on strided convs, else symmetric (k-1)/2*d)."""
    if padding is Padding.TF_SAME and stride > 1:
        return math.ceil(size / stride)
    pad = (kernel - 1) // 2 * dilation
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _padding(spec: ModelSpec, stride: int) -> Padding:
    """The padding a key records: TF 'SAME' only changes strided convs, so stride-1 layers share keys across presets."""
    return spec.conventions.padding if stride > 1 else Padding.SYMMETRIC


def _size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    if h < 1 or w < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    return int(h), int(w)


def overhead_key(spec: ModelSpec, resolution: int | tuple[int, int]) -> LayerKey:
    """The near-empty model on this network's input: what one runtime call costs besides its layers."""
    h, w = _size(resolution)
    return LayerKey(LayerKind.OVERHEAD, h, w, spec.in_chans, spec.in_chans)


def network_layers(spec: ModelSpec, resolution: int | tuple[int, int]) -> list[Layer]:
    """Every layer of the classifier ``spec`` at ``resolution`` in forward order (the same walk as MobileNetV3.__init__)."""
    if spec.detection is not None or spec.segmentation is not None:
        kind = "an SSDLite detector" if spec.detection is not None else "an LR-ASPP segmenter"
        raise ValueError(f"{spec.name} is {kind}; latency tables cover the classifier network only")
    h, w = _size(resolution)
    if h < spec.total_stride or w < spec.total_stride:
        raise ValueError(f"resolution {h}x{w} is smaller than {spec.name}'s total stride {spec.total_stride}")
    pad = spec.conventions.padding
    st = spec.stem
    layers = [
        Layer("stem", LayerKey(LayerKind.STEM, h, w, spec.in_chans, st.out, kernel=st.kernel, stride=st.stride, act=st.act, padding=_padding(spec, st.stride)))
    ]
    h, w = (conv_out_size(s, st.kernel, st.stride, 1, pad) for s in (h, w))
    in_ch = st.out
    for i, b in enumerate(spec.blocks, start=1):
        key = LayerKey(
            LayerKind.BOTTLENECK,
            h,
            w,
            in_ch,
            b.out,
            exp=b.exp,
            kernel=b.kernel,
            stride=b.stride,
            dilation=b.dilation,
            se=b.se,
            squeeze=squeeze_width(spec, b.exp) if b.se else 0,
            act=b.act,
            padding=_padding(spec, b.stride),
        )
        layers.append(Layer(f"block{i}", key))
        h, w = (conv_out_size(s, b.kernel, b.stride, b.dilation, pad) for s in (h, w))
        in_ch = b.out
    hd = spec.head
    layers.append(Layer("head_conv", LayerKey(LayerKind.HEAD_CONV, h, w, in_ch, hd.conv_out, kernel=1, act=hd.act)))
    layers.append(Layer("pool", LayerKey(LayerKind.POOL, h, w, hd.conv_out, hd.conv_out)))
    features = hd.conv_out
    if hd.hidden:  # MobileNetV3's 1280 / 1024 layer; MnasNet's head (hidden = 0) classifies the pooled conv directly
        layers.append(Layer("hidden", LayerKey(LayerKind.HIDDEN, 1, 1, hd.conv_out, hd.hidden, act=hd.act)))
        features = hd.hidden
    if spec.num_classes > 0:
        layers.append(Layer("classifier", LayerKey(LayerKind.CLASSIFIER, 1, 1, features, spec.num_classes)))
    return layers
