"""Every registered variant: forward, features, torch.export, TorchScript, ONNX, determinism, bad input."""

from __future__ import annotations

import io

import pytest
import torch

import mnv3
from mnv3.models import TapKind, expansion_names, pyramid_names
from mnv3.spec import Activation

ALL = mnv3.list_models(detection=False)  # the SSDLite detectors: tests/test_detection_models.py


@pytest.fixture(scope="module", params=ALL)
def model(request) -> mnv3.MobileNetV3:
    torch.manual_seed(0)
    return mnv3.create_model(request.param, num_classes=11).eval()


def test_forward_square_and_non_square(model) -> None:
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 11)
        assert model(torch.randn(2, 3, 160, 96)).shape == (2, 11)
        feats = model.forward_features(torch.randn(1, 3, 64, 96))
    assert feats.shape[1] == model.num_features
    assert model.forward_head(feats, pre_logits=True).shape == (1, model.head_hidden_size)


def test_identical_outputs_in_eval_mode(model) -> None:
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.clone()))


def test_endpoints_channels_and_strides_known_before_forward(model) -> None:
    infos = {f.name: f for f in model.feature_info}
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        out = model.forward_endpoints(x)
    assert list(out) == list(infos)
    for name, t in out.items():
        assert t.shape[1] == infos[name].channels, name
        assert t.shape[2] == -(-128 // infos[name].stride) and t.shape[3] == -(-96 // infos[name].stride), name
    with torch.no_grad():
        torch.testing.assert_close(out["head_conv"], model.forward_features(x))


def test_torch_export_and_torchscript(model) -> None:
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), ref)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        torch.testing.assert_close(torch.jit.load(buf)(x), ref)


def test_onnx_graph_keeps_native_hard_activations(model, tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), opset_version=18, dynamo=True, external_data=False)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    n_hswish = sum(isinstance(m, torch.nn.Hardswish) for m in model.modules())
    n_hsig = sum(isinstance(m, torch.nn.Hardsigmoid) for m in model.modules())
    assert ops.count("HardSwish") == n_hswish
    assert ops.count("HardSigmoid") == n_hsig
    uses_hs = model.spec.stem.act is Activation.HSWISH or any(b.act is Activation.HSWISH for b in model.spec.blocks)
    assert (n_hswish > 0) == uses_hs


def test_ssdlite_and_pyramid_taps() -> None:
    large = mnv3.create_model("mobilenetv3_large_100")
    small = mnv3.create_model("mobilenetv3_small_100")
    assert expansion_names(large.spec)[16] == "block13.expansion"  # paper §6.3: C4 = expansion of block 13
    assert expansion_names(small.spec)[16] == "block9.expansion"
    assert large.feature_channels(["block13.expansion", "head_conv"]) == [672, 960]
    assert small.feature_channels(["block9.expansion", "head_conv"]) == [288, 576]
    assert pyramid_names(large.spec) == {4: "block3", 8: "block6", 16: "block12", 32: "head_conv"}
    assert all(f.kind is TapKind.EXPANSION for f in large.taps(TapKind.EXPANSION))
    det = mnv3.create_model("mobilenetv3_large_100_detection")
    assert det.feature_channels(["block13.expansion", "head_conv"]) == [672, 480]  # C4 kept, C5 halved
    with pytest.raises(ValueError, match="unknown feature tap"):
        large.forward_endpoints(torch.zeros(1, 3, 64, 64), ["block99"])


def test_feature_extractor_pyramid_ssdlite_and_export() -> None:
    from mnv3.models import FeatureExtractor

    model = mnv3.create_model("mobilenetv3_small_100").eval()
    ssd = FeatureExtractor.ssdlite(model)
    assert ssd.names == ["block9.expansion", "head_conv"] and ssd.out_channels == [288, 576] and ssd.strides == [16, 32]
    pyr = FeatureExtractor.pyramid(model)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        feats = pyr(x)
        assert [t.shape[1] for t in feats.values()] == pyr.out_channels
        assert [128 // t.shape[-1] for t in feats.values()] == [4, 8, 16, 32]
        exported = torch.export.export(ssd, (x,)).module()
        for a, b in zip(exported(x).values(), ssd(x).values(), strict=True):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="dilated"):
        FeatureExtractor.ssdlite(mnv3.create_model("mobilenetv3_small_100_segmentation"))


def test_reset_classifier_and_config_rebuild() -> None:
    m = mnv3.create_model("mobilenetv3_small_075")
    m.reset_classifier(5)
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    rebuilt = mnv3.create_model(mnv3.spec.spec_from_dict(m.config))
    assert rebuilt.spec == m.spec
    m.reset_classifier(0)
    assert m(torch.zeros(1, 3, 64, 64)).shape == (1, m.head_hidden_size)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 224, 224), "expected a 4-D tensor"),
        ((1, 1, 224, 224), "expected 3 input channels, got 1"),
        ((1, 3, 16, 224), "smaller than the network's total stride 32"),
    ],
)
def test_bad_input_errors(shape, message) -> None:
    m = mnv3.create_model("mobilenetv3_small_100").eval()
    with pytest.raises(ValueError, match=message):
        m(torch.zeros(shape))


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match="Did you mean: mobilenetv3_large_100"):
        mnv3.create_model("mobilenetv3_lage_100")


def test_in_chans_override() -> None:
    m = mnv3.create_model("mobilenetv3_small_100", in_chans=1, num_classes=10)
    assert m(torch.zeros(2, 1, 64, 64)).shape == (2, 10)


def test_named_weights_choose_their_preset(monkeypatch, tmp_path) -> None:
    """create_model(name, weights=ENTRY) builds under the entry's preset and computes the source's logits."""
    import torchvision

    import mnv3.weights.download as download
    from mnv3.weights.named import get_weights

    src = torchvision.models.mobilenet_v3_large().eval()
    torch.save(src.state_dict(), tmp_path / "large.pth")
    monkeypatch.setattr(download, "fetch", lambda entry, progress=True: tmp_path / "large.pth")  # no network here
    entry = get_weights("mobilenetv3_large_100.torchvision_v1")
    model = mnv3.create_model(entry.model, weights=entry.name).eval()
    assert model.spec.conventions == mnv3.spec.get_preset(entry.preset)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (model(x) - src(x)).abs().max() <= 1e-4
