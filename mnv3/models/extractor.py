"""A backbone that returns named feature maps: what SSDLite / LR-ASPP heads consume (paper §6.3-6.4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnv3.models.features import expansion_names, pyramid_names
from mnv3.models.mobilenetv3 import MobileNetV3


class FeatureExtractor(nn.Module):
    """Wraps a MobileNetV3 and returns ``{name: tensor}`` for the chosen taps.

    ``out_channels`` and ``strides`` are known at construction, before any forward pass.
    Layers after the deepest tap are not run. Exportable with ``torch.export``.
    """

    def __init__(self, model: MobileNetV3, names: Sequence[str]) -> None:
        super().__init__()
        if not names:
            raise ValueError("FeatureExtractor needs at least one tap name; see model.feature_info for the choices")
        infos = {f.name: f for f in model.feature_info}
        unknown = [n for n in names if n not in infos]
        if unknown:
            raise ValueError(f"unknown feature tap(s) {unknown}; available taps: {list(infos)}")
        self.model = model
        self.names = list(names)
        self.out_channels = [infos[n].channels for n in self.names]
        self.strides = [infos[n].stride for n in self.names]

    @classmethod
    def pyramid(cls, model: MobileNetV3, strides: tuple[int, ...] = (4, 8, 16, 32)) -> FeatureExtractor:
        """The last feature map at each stride (C2..C5)."""
        return cls(model, list(pyramid_names(model.spec, strides).values()))

    @classmethod
    def ssdlite(cls, model: MobileNetV3) -> FeatureExtractor:
        """SSDLite's two backbone taps: the C4 expansion layer and the C5 head conv (paper §6.3)."""
        taps = expansion_names(model.spec)
        if 16 not in taps:
            raise ValueError("this backbone has no expansion layer leaving stride 16 (is it dilated?); SSDLite needs output stride 32")
        return cls(model, [taps[16], "head_conv"])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_endpoints(x, self.names)
