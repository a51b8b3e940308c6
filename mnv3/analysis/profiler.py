"""Parameters and multiply-adds as the paper counts them: conv and linear MACs only (paper Table 9; docs/architecture.md).

Counting uses ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC); BN, activations,
pooling, resizing, element-wise products and bias adds are not counted, exactly as in Tables 7-9.
By default the pass runs on a copy of the model on the meta device: shapes only, no arithmetic, so
a segmenter at 1024x2048 (Table 7) is counted in well under a second.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class LayerCost:
    """One conv or linear layer: its name, kind, parameters, multiply-adds and output shape."""

    name: str
    kind: str
    params: int
    madds: int
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class Profile:
    """Totals and the per-layer breakdown for one model at one resolution."""

    model: str
    resolution: tuple[int, int]
    params: int
    madds: int
    layers: tuple[LayerCost, ...]

    def to_dict(self, per_layer: bool = True) -> dict:
        d = asdict(self)
        d["params_m"] = round(self.params / 1e6, 3)
        d["madds_m"] = round(self.madds / 1e6, 2)
        if not per_layer:
            d.pop("layers")
        return d

    def to_json(self, per_layer: bool = True) -> str:
        return json.dumps(self.to_dict(per_layer), indent=2)

    def table(self, per_layer: bool = False) -> str:
        """A readable text table; per-layer rows when asked."""
        lines = []
        if per_layer:
            w = max([len(layer.name) for layer in self.layers] + [5])
            lines.append(f"{'layer':<{w}}  {'kind':<6} {'params':>10} {'MAdds':>12}  output")
            for layer in self.layers:
                shape = "x".join(str(s) for s in layer.output_shape)
                lines.append(f"{layer.name:<{w}}  {layer.kind:<6} {layer.params:>10,} {layer.madds:>12,}  {shape}")
            lines.append("")
        lines.append(f"model       {self.model}")
        lines.append(f"resolution  {self.resolution[0]}x{self.resolution[1]}")
        lines.append(f"params      {self.params:,} ({self.params / 1e6:.2f} M)")
        lines.append(f"MAdds       {self.madds:,} ({self.madds / 1e6:.1f} M)")
        return "\n".join(lines)


def count_params(model: nn.Module) -> int:
    """All parameters (BN affine included, BN running statistics not), as torchvision and the paper count."""
    return sum(p.numel() for p in model.parameters())


def profile_model(
    model: nn.Module, resolution: int | tuple[int, int] = 224, name: str | None = None, *, device: str | torch.device = "meta"
) -> Profile:
    """Run one batch-1 forward pass in eval mode (on a meta-device copy by default) and count parameters and conv/linear MAdds per layer."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    in_chans = getattr(getattr(model, "spec", None), "in_chans", 3)
    params = count_params(model)
    label = name or getattr(getattr(model, "spec", None), "name", type(model).__name__)
    if torch.device(device).type == "meta":
        model = copy.deepcopy(model).to("meta")
    layer_modules = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
        for n, m in layer_modules.items()
    ]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_chans, h, w, device=next(model.parameters()).device))
    finally:
        for hk in hooks:
            hk.remove()
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__  # FlopCounterMode keys modules as "<RootClass>.<qualified name>"
    layers = []
    for n, m in layer_modules.items():
        flops = sum(counts.get(f"{root}.{n}" if n else root, {}).values())
        layers.append(
            LayerCost(
                name=n,
                kind="conv" if isinstance(m, nn.Conv2d) else "linear",
                params=sum(p.numel() for p in m.parameters()),
                madds=int(flops // 2),
                output_shape=shapes.get(n, ()),
            )
        )
    total = int(counter.get_total_flops() // 2)
    return Profile(label, (h, w), params, total, tuple(layers))
