"""The torchvision preset is torchvision's network: same tensors in the same order, same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

import mnv3


def _randomise_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


CASES = [
    ("mobilenetv3_large_100", torchvision.models.mobilenet_v3_large, {}, {}),
    ("mobilenetv3_small_100", torchvision.models.mobilenet_v3_small, {}, {}),
    ("mobilenetv3_large_075", torchvision.models.mobilenet_v3_large, {}, {"width_mult": 0.75}),
    ("mobilenetv3_small_050", torchvision.models.mobilenet_v3_small, {}, {"width_mult": 0.5}),
    ("mobilenetv3_large_100_detection", torchvision.models.mobilenet_v3_large, {}, {"reduced_tail": True}),
    ("mobilenetv3_large_100", torchvision.models.mobilenet_v3_large, {"output_stride": 16}, {"dilated": True}),
    ("mobilenetv3_small_100", torchvision.models.mobilenet_v3_small, {"output_stride": 16}, {"dilated": True}),
]


@pytest.mark.parametrize(("name", "tv_fn", "ours_kw", "tv_kw"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_state_dict_and_outputs_match_torchvision(name, tv_fn, ours_kw, tv_kw) -> None:
    gen = torch.Generator().manual_seed(0)
    ref = tv_fn(**tv_kw).eval()
    _randomise_bn(ref, gen)
    ours = mnv3.create_model(name, preset="torchvision", **ours_kw).eval()
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert [tuple(v.shape) for v in ref_sd.values()] == [tuple(v.shape) for v in our_sd.values()]
    ours.load_state_dict(dict(zip(our_sd.keys(), ref_sd.values(), strict=True)))
    # dilation and stride of every depthwise conv agree too
    ref_dw = [(m.stride, m.dilation) for m in ref.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    our_dw = [(m.stride, m.dilation) for m in ours.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert ref_dw == our_dw
    x = torch.randn(2, 3, 96, 128, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
