"""``mnv3 predict`` on an LR-ASPP segmenter (paper §6.4): class ids per pixel at the image's own size equal to the argmax of
the model's logits computed directly, a colour overlay in the weights' palette (or the default one), pixel fractions in text
and JSON; ``--task`` checked against the network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import draw_segmentation_masks

import mnv3
from mnv3.cli.main import main
from mnv3.cli.predict_cmd import default_palette
from mnv3.data.segmentation import segmentation_eval_transform
from mnv3.models.testing import randomize_
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights.io import WeightsMeta, save_weights
from mnv3.weights.resolve import load_model

NAME = "lraspp_mobilenetv3_small_100"
CLASSES = ["background", "shirt", "shoe", "bag"]
PP = Preprocessing(resize=64, crop=64, mean=(0.5, 0.4, 0.3), std=(0.25, 0.25, 0.25))
PALETTE = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200]]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random segmenter saved twice (with and without a palette), a classifier, and two non-square images."""
    root = tmp_path_factory.mktemp("seg")
    torch.manual_seed(0)
    net = randomize_(mnv3.create_model(NAME, num_classes=len(CLASSES)).eval(), seed=3)
    for m in net.modules():  # He init and no biases: logits that vary over the image (the preset's init gives one class)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    rng = np.random.default_rng(0)
    paths = {}
    for name, (h, w) in (("wide", (50, 90)), ("tall", (81, 47))):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([255 * xx / w, 255 * yy / h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
        paths[name] = root / f"{name}.png"
        Image.fromarray(img).save(paths[name])
    return {
        **paths,
        "weights": save_weights(net, root / "seg.safetensors", WeightsMeta(PP, CLASSES)),
        "palette": save_weights(net, root / "seg-palette.safetensors", WeightsMeta(PP, CLASSES, palette=PALETTE)),
        "classifier": save_weights(mnv3.create_model("mobilenetv3_small_050", num_classes=3), root / "cls.safetensors"),
    }


def _expected(weights: Path, image: Path) -> torch.Tensor:
    """The class per pixel computed directly: the weights' transform, the model, bilinear to the image's size, argmax."""
    net = load_model(str(weights)).eval()
    pixels = pil_to_tensor(Image.open(image).convert("RGB"))
    with torch.no_grad():
        logits = net(segmentation_eval_transform(PP.crop, PP.mean, PP.std)(pixels).unsqueeze(0))
    return F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear", align_corners=False).argmax(1)[0]


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("mnv3 predict: error: "), err
    return err[0]


def test_class_ids_equal_the_models_argmax_and_the_overlay_uses_the_palette(setup: dict[str, Path], tmp_path: Path, capsys):
    out = tmp_path / "wide-seg.png"
    argv = ["predict", str(setup["wide"]), "--weights", str(setup["palette"]), "--task", "segment", "-o", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    ids_img = Image.open(tmp_path / "wide-seg.classes.png")
    assert ids_img.mode == "L" and ids_img.size == (90, 50)
    ids = torch.from_numpy(np.asarray(ids_img).astype(np.int64))
    expected = _expected(setup["palette"], setup["wide"])
    assert len(expected.unique()) > 1  # a comparison of several classes, not of one constant
    assert torch.equal(ids, expected)
    pixels = pil_to_tensor(Image.open(setup["wide"]).convert("RGB"))
    masks = expected.unsqueeze(0) == torch.arange(len(CLASSES)).view(-1, 1, 1)
    want = draw_segmentation_masks(pixels, masks, alpha=0.5, colors=[tuple(c) for c in PALETTE])
    assert torch.equal(pil_to_tensor(Image.open(out)), want)
    assert f"{setup['wide']}: 90x50, " in text and "class ids in" in text
    for i, name in enumerate(CLASSES):
        share = float((expected == i).double().mean())
        if share > 0:
            assert f"{100 * share:6.2f} %  [{i:>3}] {name}" in text


def test_out_dir_json_fractions_and_the_default_palette(setup: dict[str, Path], tmp_path: Path, capsys):
    images = [str(setup["wide"]), str(setup["tall"])]
    assert main(["predict", *images, "--weights", str(setup["weights"]), "--json", "--out-dir", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == images and rows[1]["size"] == [47, 81]
    for r, stem in zip(rows, ("wide", "tall"), strict=True):
        assert r["drawing"] == str(tmp_path / f"{stem}.png") and r["classes"] == str(tmp_path / f"{stem}.classes.png")
        ids = torch.from_numpy(np.asarray(Image.open(r["classes"])).astype(np.int64))
        expected = _expected(setup["weights"], setup[stem])
        assert torch.equal(ids, expected)
        assert [f["label"] for f in r["fractions"]] == CLASSES
        assert [f["fraction"] for f in r["fractions"]] == pytest.approx(
            [float((expected == i).double().mean()) for i in range(len(CLASSES))]
        )
        pixels = pil_to_tensor(Image.open(setup[stem]).convert("RGB"))
        masks = expected.unsqueeze(0) == torch.arange(len(CLASSES)).view(-1, 1, 1)
        want = draw_segmentation_masks(pixels, masks, alpha=0.5, colors=default_palette(len(CLASSES)))  # type: ignore[arg-type]
        assert torch.equal(pil_to_tensor(Image.open(r["drawing"])), want)


def test_task_is_checked_against_the_network(setup: dict[str, Path], capsys):
    seg, cls = str(setup["weights"]), str(setup["classifier"])
    assert "is a segmentation network" in _one_error_line(
        ["predict", str(setup["wide"]), "--weights", seg, "--task", "detect"], capsys
    )
    assert "is a classification network" in _one_error_line(
        ["predict", str(setup["wide"]), "--weights", cls, "--task", "segment"], capsys
    )
    assert "only for detectors" in _one_error_line(
        ["predict", str(setup["wide"]), "--weights", seg, "--threshold", "0.5"], capsys
    )
    assert main(["predict", str(setup["wide"]), "--weights", cls, "--task", "classify"]) == 0  # agreeing --task is accepted
    capsys.readouterr()


def test_unreadable_file_is_an_error_line_and_the_others_are_predicted(setup: dict[str, Path], tmp_path: Path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(bad), str(setup["tall"]), "--weights", str(setup["weights"])]) == 2
    captured = capsys.readouterr()
    assert f"{setup['tall']}: 47x81, " in captured.out and "1 of 2 file(s) could not be read" in captured.err
