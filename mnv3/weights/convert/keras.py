"""Keras ``MobileNetV3Large`` / ``MobileNetV3Small`` weights -> mnv3 (preset ``keras``).

The walk follows ``keras/src/applications/mobilenet_v3.py`` layer by layer:
stem ``conv`` + ``conv_bn``; per bottleneck ``block_id`` 0..N-1: [``expand`` + BN, for every
block but the first], ``depthwise`` + BN, [``squeeze_excite_conv`` and ``_conv_1``, both with bias],
``project`` + BN; then ``conv_1`` + BN (960 / 576), ``conv_2`` (1x1 conv with bias on the pooled
map: mnv3's ``head_hidden`` Linear) and ``logits`` (1x1 conv: the classifier). The number of
bottlenecks is the number of depthwise layers; an SE is present where the next conv has a bias.
Keras stores kernels as (H, W, in, out) and depthwise kernels as (H, W, C, 1); BN keeps its moving
statistics. The in-model ``Rescaling(1/127.5, -1)`` has no weights: mnv3 reproduces it with the
weights' preprocessing (mean = std = 0.5 on [0, 1] inputs, :data:`mnv3.weights.INCEPTION`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mnv3.weights.convert.common import Library, Mapped
from mnv3.weights.keras_file import KerasLayer, KerasWeights


def _conv_kernel(k: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))


def _linear_kernel(k: np.ndarray) -> torch.Tensor:
    if k.ndim != 4 or k.shape[:2] != (1, 1):
        raise ValueError(f"expected a 1x1 Keras conv kernel for a head layer, got shape {list(k.shape)}")
    return torch.from_numpy(np.ascontiguousarray(k[0, 0].T))


def _origin(layer: KerasLayer, keras_name: str, variable: str) -> str:
    """How errors name a tensor: the file's layer name, plus keras.applications' name when they differ."""
    where = f"{layer.name}/{variable}"
    return where if layer.name == keras_name else f"{where} (Keras layer {keras_name})"


class _Stream:
    """Consume one class of layers in order, with errors that say what was expected."""

    def __init__(self, layers: list[KerasLayer], kind: str) -> None:
        self._layers, self._kind, self._i = layers, kind, 0

    def peek(self) -> KerasLayer | None:
        return self._layers[self._i] if self._i < len(self._layers) else None

    def take(self, what: str) -> KerasLayer:
        layer = self.peek()
        if layer is None:
            raise ValueError(f"the Keras file ran out of {self._kind} layers while looking for {what}; not a full MobileNetV3 (include_top=True) file?")
        self._i += 1
        return layer

    def rest(self) -> Iterator[KerasLayer]:
        return iter(self._layers[self._i :])


def keras_to_mnv3(weights: KerasWeights) -> Mapped:
    """Map Keras MobileNetV3 layers to mnv3 keys (shapes are checked later)."""
    out = Mapped(Library.KERAS)
    convs, bns = _Stream(weights.convs, "Conv2D"), _Stream(weights.batchnorms, "BatchNormalization")
    if not weights.depthwise:
        raise ValueError("the Keras file has no DepthwiseConv2D layers; not a MobileNetV3 weights file")

    def conv(dst: str, keras_name: str, what: str, *, bias: bool) -> None:
        layer = convs.take(what)
        if ("bias" in layer.arrays) != bias:
            raise ValueError(f"Keras layer {layer.name} should be {what} ({'with' if bias else 'without'} bias) but is not")
        out.put(f"{dst}.weight", _conv_kernel(layer.arrays["kernel"]), _origin(layer, keras_name, "kernel"))
        if bias:
            out.put(f"{dst}.bias", torch.from_numpy(np.asarray(layer.arrays["bias"])), _origin(layer, keras_name, "bias"))

    def bn(dst: str, keras_name: str, what: str) -> None:
        layer = bns.take(what)
        a = layer.arrays
        tensors = {
            "weight": a["gamma"],
            "bias": a["beta"],
            "running_mean": a["moving_mean"],
            "running_var": a["moving_variance"],
        }
        names = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
        out.put_bn(dst, {k: torch.from_numpy(np.asarray(v)) for k, v in tensors.items()}, {k: _origin(layer, keras_name, names[k]) for k in tensors})

    conv("stem.conv", "conv", "the stem conv", bias=False)
    bn("stem", "conv_bn", "the stem BN")
    for i, dw in enumerate(weights.depthwise):
        what = f"bottleneck {i} (Keras block_id {i})"
        prefix = f"expanded_conv_{i}_" if i else "expanded_conv_"  # keras' own layer names
        if i > 0:
            conv(f"blocks.{i}.expand.conv", prefix + "expand", f"the expansion conv of {what}", bias=False)
            bn(f"blocks.{i}.expand", prefix + "expand_bn", f"the expansion BN of {what}")
        kernel = torch.from_numpy(np.ascontiguousarray(dw.arrays["kernel"].transpose(2, 3, 0, 1)))
        out.put(f"blocks.{i}.dw.conv.weight", kernel, _origin(dw, prefix + "depthwise", "kernel"))
        bn(f"blocks.{i}.dw", prefix + "depthwise_bn", f"the depthwise BN of {what}")
        nxt = convs.peek()
        if nxt is not None and "bias" in nxt.arrays:  # the projection conv never has a bias
            conv(f"blocks.{i}.se.fc1", prefix + "squeeze_excite_conv", f"the SE reduce conv of {what}", bias=True)
            conv(f"blocks.{i}.se.fc2", prefix + "squeeze_excite_conv_1", f"the SE expand conv of {what}", bias=True)
        conv(f"blocks.{i}.project.conv", prefix + "project", f"the projection conv of {what}", bias=False)
        bn(f"blocks.{i}.project", prefix + "project_bn", f"the projection BN of {what}")
    conv("head_conv.conv", "conv_1", "the head conv (conv_1)", bias=False)
    bn("head_conv", "conv_1_bn", "the head BN (conv_1_bn)")
    for dst, keras_name, what in (("head_hidden", "conv_2", "conv_2 (the hidden head layer)"), ("classifier", "logits", "logits (the classifier)")):
        layer = convs.take(what)
        out.put(f"{dst}.weight", _linear_kernel(layer.arrays["kernel"]), _origin(layer, keras_name, "kernel"))
        if "bias" not in layer.arrays:
            raise ValueError(f"Keras layer {layer.name} should be {what}, with a bias")
        out.put(f"{dst}.bias", torch.from_numpy(np.asarray(layer.arrays["bias"])), _origin(layer, keras_name, "bias"))
    left = [layer.name for layer in (*convs.rest(), *bns.rest())]
    if left:
        raise ValueError(f"the Keras file has layers after the classifier: {left[:5]}; not a keras.applications MobileNetV3")
    return out

