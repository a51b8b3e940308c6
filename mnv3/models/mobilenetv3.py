"""The MobileNetV3 network, built from a :class:`ModelSpec` and nothing else (paper §5, Tables 1-2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mnv3.blocks import ConvBnAct, InvertedResidual, make_activation
from mnv3.models.features import FeatureInfo, TapKind, feature_info
from mnv3.spec.serialize import spec_to_dict
from mnv3.spec.types import ModelSpec, validate


def backbone_layers(spec: ModelSpec) -> tuple[ConvBnAct, nn.ModuleList, ConvBnAct]:
    """Stem, bottlenecks and the 960 / 576 head conv (C5) of ``spec``: what the classifier and SSDLite share (§5.1, §6.3)."""
    c = spec.conventions
    stem = ConvBnAct(spec.in_chans, spec.stem.out, spec.stem.kernel, c, stride=spec.stem.stride, act=spec.stem.act)
    blocks = []
    in_ch = spec.stem.out
    for b in spec.blocks:
        blocks.append(InvertedResidual(in_ch, b, spec))
        in_ch = b.out
    return stem, nn.ModuleList(blocks), ConvBnAct(in_ch, spec.head.conv_out, 1, c, act=spec.head.act)


def check_input(spec: ModelSpec, x: torch.Tensor) -> None:
    """Raise ValueError when x is not an (N, C, H, W) tensor a network of ``spec`` can take."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (N, {spec.in_chans}, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"expected a 4-D tensor (N, {spec.in_chans}, H, W), got {x.dim()}-D shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0)"
        )
    if x.shape[1] != spec.in_chans:
        raise ValueError(
            f"expected {spec.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
            "convert the image (e.g. grayscale to RGB) or build the model with in_chans="
            f"{x.shape[1]}"
        )
    s = spec.total_stride
    if x.shape[2] < s or x.shape[3] < s:
        raise ValueError(
            f"input {x.shape[2]}x{x.shape[3]} is smaller than the network's total stride {s}; "
            f"resize the input to at least {s}x{s}"
        )


def init_weights_(model: nn.Module) -> None:
    """torchvision's init: Kaiming-normal fan_out convs, N(0, 0.01) linears, zero biases, unit BN (classifier §5, LR-ASPP §6.4)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class SpecNetwork(nn.Module):
    """What every network built from a spec shares (classifier §5, SSDLite §6.3): ``config``, ``num_classes``, the input check."""

    __jit_unused_properties__ = ["config", "num_classes"]

    @property
    def config(self) -> dict:
        """The plain-dict spec this network was built from; ``create_model(spec_from_dict(cfg))`` rebuilds it."""
        return spec_to_dict(self.spec)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @torch.jit.unused
    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when x is not an (N, C, H, W) tensor this network can take."""
        check_input(self.spec, x)


class MobileNetV3(SpecNetwork):
    """Stem, bottlenecks and the efficient last stage (§5.1), with a timm-style model API.

    ``forward_features`` returns the pre-pool C5 map (960 / 576 channels); ``forward_head``
    pools, applies the 1280 / 1024 hidden layer and the classifier; ``forward_endpoints``
    returns named taps, expansion outputs included (see :attr:`feature_info`).
    """

    __jit_unused_properties__ = ["config", "num_classes"]

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        validate(spec)
        if spec.detection is not None:
            raise ValueError(f"{spec.name} is an SSDLite detector spec; build it with mnv3.create_model (mnv3.models.SSDLite)")
        if spec.segmentation is not None:
            raise ValueError(f"{spec.name} is an LR-ASPP segmenter spec; build it with mnv3.create_model (mnv3.models.LRASPP)")
        self.spec = spec
        self.stem, self.blocks, self.head_conv = backbone_layers(spec)
        # after pooling: 1x1 hidden layer without BN (a Linear on the pooled vector), then classifier
        self.pool = nn.AdaptiveAvgPool2d(1)
        # hidden = 0 (MnasNet's head): no hidden layer, the classifier reads the pooled conv_out
        has_hidden = spec.head.hidden > 0
        self.head_hidden: nn.Module = nn.Linear(spec.head.conv_out, spec.head.hidden) if has_hidden else nn.Identity()
        self.head_act: nn.Module = make_activation(spec.head.act) if has_hidden else nn.Identity()
        self.dropout = nn.Dropout(spec.head.dropout)
        self.head_hidden_size = spec.head.hidden if has_hidden else spec.head.conv_out
        self.classifier: nn.Module = nn.Linear(self.head_hidden_size, spec.num_classes) if spec.num_classes > 0 else nn.Identity()
        self.feature_info: list[FeatureInfo] = feature_info(spec)
        self.num_features = spec.head.conv_out
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal fan_out convs, N(0, 0.01) linears, zero biases, unit BN."""
        init_weights_(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone up to the pre-pool head conv (C5)."""
        if not torch.jit.is_scripting():
            self.check_input(x)
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, hidden 1280 / 1024 layer with its activation, dropout, classifier."""
        x = torch.flatten(self.pool(x), 1)
        x = self.dropout(self.head_act(self.head_hidden(x)))
        if pre_logits:
            return x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (0 removes it); the spec follows so the config stays exact."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.spec = self.spec.replace(num_classes=num_classes)
        self.classifier = nn.Linear(self.head_hidden_size, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.classifier, nn.Linear):
            nn.init.normal_(self.classifier.weight, 0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def feature_channels(self, names: Sequence[str]) -> list[int]:
        """Channel counts of the named taps, without running the network."""
        by_name = {f.name: f for f in self.feature_info}
        return [self._lookup(by_name, n).channels for n in names]

    @staticmethod
    def _lookup(by_name: dict[str, FeatureInfo], name: str) -> FeatureInfo:
        if name not in by_name:
            raise ValueError(f"unknown feature tap {name!r}; available taps: {list(by_name)}")
        return by_name[name]

    @torch.jit.unused
    def forward_endpoints(self, x: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Named intermediate features (all taps when ``names`` is None), in forward order.

        Stops as soon as the deepest requested tap is computed.
        """
        by_name = {f.name: f for f in self.feature_info}
        wanted = list(by_name) if names is None else list(names)
        infos = [self._lookup(by_name, n) for n in wanted]
        last = max(i.index for i in infos)
        want_set = set(wanted)
        self.check_input(x)
        out: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        if "stem" in want_set:
            out["stem"] = x
        for i, block in enumerate(self.blocks, start=1):
            if i > last:
                break
            x, e = block.forward_with_expansion(x)
            if f"block{i}.expansion" in want_set:
                out[f"block{i}.expansion"] = e
            if f"block{i}" in want_set:
                out[f"block{i}"] = x
        if "head_conv" in want_set:
            out["head_conv"] = self.head_conv(x)
        return {n: out[n] for n in wanted}

    def taps(self, kind: TapKind | None = None) -> list[FeatureInfo]:
        """Feature taps, optionally only outputs or only expansion layers."""
        return [f for f in self.feature_info if kind is None or f.kind is kind]
