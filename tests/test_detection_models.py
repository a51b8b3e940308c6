"""SSDLite-MobileNetV3 (paper §6.3): torchvision's network exactly, every registered detector, Table 6's sizes."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large

import mnv3
from mnv3.analysis import count_params
from mnv3.cli.main import main
from mnv3.models import SSDLite, list_models
from mnv3.models.testing import randomize_
from mnv3.spec import spec_from_dict, spec_from_yaml, spec_to_dict, spec_to_yaml
from mnv3.weights import convert_checkpoint, model_from_file

DETECTORS = [n for n in list_models() if n.startswith("ssdlite_")]
TV_PARAMS = 3_440_060  # torchvision's SSDLite320_MobileNet_V3_Large_Weights meta, 91 classes


class _Raw(nn.Module):
    """torchvision's SSD without its transform and post-processing: backbone -> head on a normalised batch."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = ssd.backbone, ssd.head

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


@pytest.fixture(scope="module")
def tv_pair(tmp_path_factory):
    """A randomised torchvision SSDLite (BN statistics measured on images), its checkpoint, and the images in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 320, 320, generator=gen)
    ref = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    randomize_(_Raw(ref), seed=3, images=(images - 0.5) / 0.5)
    ref.eval()
    path = tmp_path_factory.mktemp("tv") / "ssdlite.pth"
    torch.save(ref.state_dict(), path)
    return ref, path, images


def test_registered_names() -> None:
    assert DETECTORS == [
        "ssdlite_mobilenetv3_large_100",
        "ssdlite_mobilenetv3_large_100_reduced",
        "ssdlite_mobilenetv3_small_100",
        "ssdlite_mobilenetv3_small_100_reduced",
    ]


def test_torchvision_preset_is_torchvisions_network(tv_pair) -> None:
    ref, path, images = tv_pair
    ours, meta = convert_checkpoint(path, "torchvision")  # the model is told by the checkpoint's shapes
    assert isinstance(ours, SSDLite) and ours.spec.origin.model == "ssdlite_mobilenetv3_large_100_reduced"
    assert count_params(ours) == count_params(ref) == TV_PARAMS
    assert ours.out_channels == [672, 480, 512, 256, 256, 128] and ours.num_anchors == [6] * 6
    bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in bns} == {(1e-3, 0.03)}
    assert meta.preprocessing.mean == (0.5, 0.5, 0.5) and len(meta.categories) == 91

    x = (images - 0.5) / 0.5
    with torch.no_grad():
        raw, want = ours(x), _Raw(ref)(x)
        want_det = ref(list(images))
    for key in ("bbox_regression", "cls_logits"):
        assert raw[key].shape == want[key].shape
        assert (raw[key] - want[key]).abs().max() <= 1e-4
    # anchors: torchvision's DefaultBoxGenerator on the same feature maps
    feats = list(ref.backbone(x).values())
    image_list = torchvision.models.detection.image_list.ImageList(x, [(320, 320)] * 2)
    torch.testing.assert_close(ours.anchors((320, 320)), ref.anchor_generator(image_list, feats)[0], rtol=0, atol=1e-4)

    got = ours.postprocess(raw, [(320, 320)] * 2)
    for g, w in zip(got, want_det, strict=True):
        assert len(w["labels"]) > 0
        assert torch.equal(g["labels"], w["labels"])
        torch.testing.assert_close(g["boxes"], w["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(g["scores"], w["scores"], rtol=0, atol=1e-4)


def test_convert_cli_and_resolver_load_ssdlite(tv_pair, tmp_path, capsys) -> None:
    ref, path, images = tv_pair
    out = tmp_path / "ssdlite.safetensors"
    assert main(["convert", "--from", "torchvision", str(path), "-o", str(out)]) == 0
    assert "ssdlite_mobilenetv3_large_100_reduced" in capsys.readouterr().out
    model, _ = model_from_file(out)  # the file carries the detection head spec
    direct = mnv3.create_model("ssdlite_mobilenetv3_large_100_reduced", preset="torchvision", weights=path).eval()
    x = (images[:1] - 0.5) / 0.5
    with torch.no_grad():
        a, b = model.eval()(x), direct(x)
    assert torch.equal(a["cls_logits"], b["cls_logits"]) and model.spec == direct.spec
    # fine-tuning to another class count keeps everything but the class predictors' 1x1 convs
    tuned = mnv3.create_model("ssdlite_mobilenetv3_large_100_reduced", num_classes=3, weights=path)
    assert tuned.cls_head[0].pred.out_channels == 3 * 6
    torch.testing.assert_close(tuned.extra[0].reduce.conv.weight, direct.extra[0].reduce.conv.weight)


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("width", [0.75, 1.0])
def test_every_detector_builds_runs_and_rebuilds(name, width) -> None:
    for preset in ("paper", "torchvision"):
        model = mnv3.create_model(name, num_classes=91, preset=preset, width=width).eval()
        with torch.no_grad():
            raw = model(torch.randn(1, 3, 320, 320))
        a = model.anchors((320, 320)).shape[0]
        assert raw["bbox_regression"].shape == (1, a, 4) and raw["cls_logits"].shape == (1, a, 91)
        cfg = model.config
        assert json.loads(json.dumps(cfg)) == cfg and spec_from_dict(cfg) == model.spec
        assert spec_from_yaml(spec_to_yaml(model.spec)) == model.spec
        rebuilt = mnv3.create_model(spec_from_dict(spec_to_dict(model.spec)))
        assert isinstance(rebuilt, SSDLite) and list(rebuilt.state_dict()) == list(model.state_dict())
        assert [tuple(v.shape) for v in rebuilt.state_dict().values()] == [tuple(v.shape) for v in model.state_dict().values()]


def test_paper_preset_settings_and_postprocess() -> None:
    model = mnv3.create_model("ssdlite_mobilenetv3_small_100_reduced").eval()
    det = model.spec.detection
    assert model.num_classes == 91 and model.num_anchors == [3, 6, 6, 6, 6, 6]
    assert (det.loss.focal_alpha, det.loss.focal_gamma, det.matcher.iou_threshold) == (0.75, 2.0, 0.5)
    assert det.box_coder.weights == (10.0, 10.0, 5.0, 5.0) and (det.postprocess.nms_iou, det.postprocess.max_detections) == (0.6, 100)
    assert model.cls_head[0].pred.bias.unique().tolist() == [pytest.approx(-4.6)]
    # non-square input: TF OD API anchors stay square in pixels, sized on the shorter side
    anchors = model.anchors((320, 480))
    wh = anchors[:, 2:] - anchors[:, :2]
    assert torch.allclose(wh[0], torch.tensor([32.0, 32.0]))  # the lowest layer's (0.1, 1.0) box
    with torch.no_grad():
        raw = model(torch.randn(2, 3, 320, 480))
    dets = model.postprocess(raw, [(320, 480), (300, 400)], input_size=(320, 480))
    for d, (h, w) in zip(dets, [(320, 480), (300, 400)], strict=True):
        assert len(d["scores"]) == 100 and (d["labels"] >= 1).all()
        assert torch.all(d["scores"][:-1] >= d["scores"][1:])
        assert (d["boxes"][:, 2] <= w).all() and (d["boxes"][:, 3] <= h).all()
        assert all(int((d["labels"] == c).sum()) <= 100 for c in d["labels"].unique())


# paper Table 6 (params M, MAdds B) for the four MobileNetV3 rows, counted with 91 classes at 320x320
TABLE6 = {
    "ssdlite_mobilenetv3_large_100": (4.97, 0.62),
    "ssdlite_mobilenetv3_large_100_reduced": (3.22, 0.51),
    "ssdlite_mobilenetv3_small_100": (2.49, 0.21),
    "ssdlite_mobilenetv3_small_100_reduced": (1.77, 0.16),
}


@pytest.mark.parametrize("name", list(TABLE6))
def test_profile_reproduces_table6(name, capsys) -> None:
    assert main(["profile", name, "--resolution", "320", "--num-classes", "91", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    params, madds = TABLE6[name]
    assert abs(out["params"] / 1e6 / params - 1) <= 0.05
    assert abs(out["madds"] / 1e9 / madds - 1) <= 0.05


def test_torchvision_preset_matches_torchvisions_published_ops(capsys) -> None:
    """torchvision's meta gives 0.583 GFLOPS (its MACs) for ssdlite320_mobilenet_v3_large."""
    assert main(["profile", "ssdlite_mobilenetv3_large_100_reduced", "--preset", "torchvision", "--resolution", "320", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == TV_PARAMS and round(out["madds"] / 1e9, 3) == 0.583


def test_bad_detector_specs() -> None:
    with pytest.raises(ValueError, match="SSDLite has no 'timm' preset"):
        mnv3.create_model("ssdlite_mobilenetv3_large_100", preset="timm")
    with pytest.raises(ValueError, match="undilated backbone"):
        mnv3.create_model("ssdlite_mobilenetv3_large_100", output_stride=16)
    spec = mnv3.build_spec("ssdlite_mobilenetv3_large_100")
    with pytest.raises(ValueError, match="detection.anchors.num_layers"):
        cfg = spec_to_dict(spec)
        cfg["detection"]["anchors"]["num_layers"] = 5
        spec_from_dict(cfg)
    with pytest.raises(ValueError, match="detection.postprocess.score_function: unknown value"):
        cfg = spec_to_dict(spec)
        cfg["detection"]["postprocess"]["score_function"] = "tanh"
        spec_from_dict(cfg)
    with pytest.raises(ValueError, match="SSDLite detector spec"):
        mnv3.MobileNetV3(spec)
