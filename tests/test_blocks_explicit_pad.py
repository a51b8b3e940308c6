"""ConvBnAct's explicit-pad path (F.pad + padding 0, for AVX2 CPUs) computes what the padded conv computes."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

import mnv3
from mnv3.blocks.layers import EXPLICIT_PAD_ENV, ConvBnAct, explicit_pad_setting
from mnv3.spec.types import Activation, Conventions, Padding

SYMMETRIC = Conventions(padding=Padding.SYMMETRIC)


@pytest.fixture
def setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Monkeypatch for MNV3_EXPLICIT_PAD / the CPU capability, with the cached setting re-read before and after."""
    explicit_pad_setting.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    explicit_pad_setting.cache_clear()


def _train_step(m: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Output, input gradient and parameter gradients of one forward + backward in training mode."""
    x = x.clone().requires_grad_()
    torch.manual_seed(1)  # the same dropout mask
    y = m.train()(x)
    (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
    return y.detach(), x.grad, {n: p.grad for n, p in m.named_parameters()}


def _assert_same(a: tuple, b: tuple) -> None:
    ya, gxa, gpa = a
    yb, gxb, gpb = b
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gxa, gxb, rtol=1e-5, atol=1e-5)
    assert gpa.keys() == gpb.keys()
    for n in gpa:
        torch.testing.assert_close(gpa[n], gpb[n], rtol=1e-4, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(4, 4), (2, 7), (9, 9)])
def test_explicit_pad_gives_the_same_outputs_and_gradients(
    stride: int, kernel: int, dilation: int, size: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    ref = ConvBnAct(24, 24, kernel, SYMMETRIC, stride=stride, dilation=dilation, groups=24, act=Activation.HSWISH)
    ref.explicit_pad = "off"
    alt = copy.deepcopy(ref)
    alt.explicit_pad = "on"
    x = torch.randn(3, 24, *size).contiguous(memory_format=torch.channels_last)
    assert alt.train()._pads_explicitly(x) and not ref.train()._pads_explicitly(x)
    _assert_same(_train_step(ref, x), _train_step(alt, x))
    torch.testing.assert_close(alt.bn.running_mean, ref.bn.running_mean)
    torch.testing.assert_close(alt.bn.running_var, ref.bn.running_var)
    assert alt.state_dict().keys() == ref.state_dict().keys()


def test_switch_keeps_state_dict_and_whole_network_numerics(setting: pytest.MonkeyPatch) -> None:
    models = {}
    for value in ("0", "1"):
        setting.setenv(EXPLICIT_PAD_ENV, value)
        explicit_pad_setting.cache_clear()
        torch.manual_seed(0)
        models[value] = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", num_classes=10, in_chans=1)
    off, on = models["0"], models["1"]
    modes = {name: m.explicit_pad for name, m in on.named_modules() if isinstance(m, ConvBnAct) and m.explicit_pad != "off"}
    # every symmetric depthwise conv of the network (all 11 under torchvision's symmetric padding), nothing else
    assert set(modes) == {f"blocks.{i}.dw" for i in range(11)} and set(modes.values()) == {"on"}
    assert all(m.explicit_pad == "off" for m in off.modules() if isinstance(m, ConvBnAct))
    sd_off, sd_on = off.state_dict(), on.state_dict()
    assert list(sd_off) == list(sd_on) and all(sd_off[k].shape == sd_on[k].shape for k in sd_off)
    on.load_state_dict(sd_off)
    x = torch.randn(4, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    _assert_same(_train_step(off, x), _train_step(on, x))


def test_auto_pads_only_small_undilated_maps_in_cpu_training(setting: pytest.MonkeyPatch) -> None:
    setting.delenv(EXPLICIT_PAD_ENV, raising=False)
    setting.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert explicit_pad_setting() == "auto"
    m = ConvBnAct(8, 8, 5, SYMMETRIC, groups=8).train()
    assert m.explicit_pad == "auto"
    assert m._pads_explicitly(torch.zeros(1, 8, 4, 4)) and m._pads_explicitly(torch.zeros(1, 8, 2, 9))
    assert not m._pads_explicitly(torch.zeros(1, 8, 5, 5))  # a map as large as the kernel keeps the fast kernel
    assert not m._pads_explicitly(torch.zeros(1, 8, 4, 4, device="meta"))
    assert not m.eval()._pads_explicitly(torch.zeros(1, 8, 4, 4))
    assert ConvBnAct(8, 8, 5, SYMMETRIC, dilation=2, groups=8).explicit_pad == "off"
    assert ConvBnAct(8, 16, 5, SYMMETRIC).explicit_pad == "off"  # not depthwise
    assert ConvBnAct(8, 8, 5, Conventions(), stride=2, groups=8).explicit_pad == "off"  # SAME: padded by SamePad2d


@pytest.mark.parametrize(("capability", "expected"), [("AVX512", "off"), ("AVX2", "auto"), ("DEFAULT", "off")])
def test_setting_follows_the_cpu_capability_and_env(setting: pytest.MonkeyPatch, capability: str, expected: str) -> None:
    setting.delenv(EXPLICIT_PAD_ENV, raising=False)
    setting.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert explicit_pad_setting() == expected
    for value, forced in (("1", "on"), ("0", "off")):
        setting.setenv(EXPLICIT_PAD_ENV, value)
        explicit_pad_setting.cache_clear()
        assert explicit_pad_setting() == forced
    setting.setenv(EXPLICIT_PAD_ENV, "yes")
    explicit_pad_setting.cache_clear()
    with pytest.raises(ValueError, match=EXPLICIT_PAD_ENV):
        explicit_pad_setting()


@pytest.mark.parametrize("train", [False, True])
def test_exported_graph_keeps_the_padded_conv(train: bool) -> None:
    m = ConvBnAct(8, 8, 5, SYMMETRIC, groups=8, act=Activation.RELU).train(train)
    m.explicit_pad = "on"
    graph = torch.export.export(m, (torch.randn(2, 8, 4, 4),)).graph
    targets = {str(n.target) for n in graph.nodes if n.op == "call_function"}
    assert not any("pad" in t for t in targets), targets
