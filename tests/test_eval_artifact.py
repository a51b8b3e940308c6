"""``mnv3 eval SOURCE --artifact FILE``: an exported file scored in its runtime with SOURCE's data and metric gives the
numbers PyTorch gives (fp32 ONNX: same mIoU / top-1), an int8 file its own; a wrong file is one line and exit 2.
(The detector's case, COCO numbers through the same NMS, is in tests/test_detection_cli.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mnv3
from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.data.segmentation import FASHION_SCENES_CLASSES
from mnv3.models.testing import randomize_
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights.io import WeightsMeta, save_weights

pytest.importorskip("onnxruntime")
SIZE = 64
PP = Preprocessing(resize=SIZE, crop=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
TRAIN, TEST = 2, 4  # the Fashion scenes set the segmenter's recipe names


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A random LR-ASPP-Small (logits that vary over the image) and a random Fashion-MNIST classifier, each exported to fp32 ONNX."""
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    from mnv3.data.detection import ensure_fashion_scenes

    root = tmp_path_factory.mktemp("artifact")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNV3_CACHE", str(root / "cache"))
        ensure_fashion_scenes(train=TRAIN, test=TEST, seed=0, progress=False)
        torch.manual_seed(0)
        seg = randomize_(mnv3.create_model("lraspp_mobilenetv3_small_100", num_classes=len(FASHION_SCENES_CLASSES), width=0.35), seed=3)
        for m in seg.modules():  # He init: a label map with several classes (the preset's init gives one)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        recipe = {"task": "segmentation", "data": "fashion-scenes", "train_subset": TRAIN, "val_subset": TEST}
        seg_w = save_weights(seg.eval(), root / "seg.safetensors", WeightsMeta(PP, list(FASHION_SCENES_CLASSES), recipe=recipe))
        cls = randomize_(mnv3.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1), seed=2, images=torch.randn(8, 1, 32, 32))
        cls_pp = Preprocessing(resize=32, crop=32, mean=(0.5,), std=(0.25,), grayscale=True)
        cls_w = save_weights(cls.eval(), root / "cls.safetensors", WeightsMeta(cls_pp, list(fm.CLASSES)))
        files = {"root": root, "seg": seg_w, "cls": cls_w}
        for key in ("seg", "cls"):
            files[f"{key}.onnx"] = root / f"{key}.onnx"
            assert main(["export", "--weights", str(files[key]), "--format", "onnx", "-o", str(files[f"{key}.onnx"])]) == 0
        yield files


def _reports(setup: dict[str, Path], key: str, tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    """(PyTorch's report, the ONNX file's report) of ``mnv3 eval`` on the same data."""
    src, art = str(setup[key]), str(setup[f"{key}.onnx"])
    assert main(["eval", src, *extra, "--out-dir", str(tmp_path / "torch")]) == 0
    assert main(["eval", src, "--artifact", art, *extra, "--out-dir", str(tmp_path / "ort")]) == 0
    ref = json.loads((tmp_path / "torch" / "eval-test.json").read_text())
    got = json.loads((tmp_path / "ort" / f"eval-test-{key}.onnx.json").read_text())
    assert got["artifact"] == art and "artifact" not in ref
    return ref, got


def test_segmenter_file_scores_the_miou_of_pytorch(setup: dict[str, Path], tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("MNV3_CACHE", str(setup["root"] / "cache"))
    ref, got = _reports(setup, "seg", tmp_path)
    conf, conf_ort = np.array(ref["confusion"]), np.array(got["confusion"])
    assert (conf.sum(0) > 0).sum() >= 3  # the label map holds several classes, so equal counts mean equal maps
    assert np.abs(conf_ort - conf).sum() <= 1e-3 * conf.sum()  # per-pixel (true, predicted) counts: a few near-ties at most
    assert got["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-3) and got["pixel_accuracy"] == pytest.approx(ref["pixel_accuracy"], abs=1e-3)
    assert (tmp_path / "ort" / "iou_per_class-test-seg.onnx.png").is_file()
    assert "eval-test-seg.onnx.json" in capsys.readouterr().out


def test_classifier_file_scores_the_top1_of_pytorch(setup: dict[str, Path], tmp_path: Path):
    ref, got = _reports(setup, "cls", tmp_path, "--subset", "200")
    assert got["count"] == ref["count"] == 200
    assert got["top1"] == pytest.approx(ref["top1"], abs=0.5 / 200) and got["top5"] == pytest.approx(ref["top5"], abs=0.5 / 200)


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "warning:" not in line]
    assert len(err) == 1 and err[0].startswith("mnv3 eval: error: "), err
    return err[0]


def test_wrong_files_are_one_line_errors(setup: dict[str, Path], tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("MNV3_CACHE", str(setup["root"] / "cache"))
    line = _one_error_line(["eval", str(setup["cls"]), "--artifact", str(setup["cls"]), "--out-dir", str(tmp_path)], capsys)
    assert "not an exported model file" in line and ".onnx" in line and ".pte" in line and ".tflite" in line
    missing = tmp_path / "none.pte"
    line = _one_error_line(["eval", str(setup["cls"]), "--artifact", str(missing), "--out-dir", str(tmp_path)], capsys)
    assert "does not exist" in line and "--format executorch" in line
    line = _one_error_line(["eval", str(setup["cls"]), "--artifact", str(setup["seg.onnx"]), "--out-dir", str(tmp_path)], capsys)
    assert "exported from 'lraspp_mobilenetv3_small" in line and "not from 'mobilenetv3_small_050'" in line
    assert not list(tmp_path.glob("eval-*.json"))  # nothing written
