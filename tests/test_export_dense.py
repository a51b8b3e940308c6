"""Dense-task export (paper §6.3 SSDLite, §6.4 LR-ASPP) to every installed runtime: raw outputs checked against PyTorch,
int8 agreement on ONNX, anchors and metadata beside the file, ``mnv3 export`` for both tasks and its bad inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import runtimes
from mnv3.deploy.detection import RawDetector, export_detector
from mnv3.deploy.export import load_predictor
from mnv3.deploy.segmentation import export_segmenter
from mnv3.models.testing import randomize_
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights.io import WeightsMeta, save_weights

SIZE = 64  # the smallest input that passes the detector's total stride (32) twice over
DET, SEG = "ssdlite_mobilenetv3_small_100", "lraspp_mobilenetv3_small_100"
WIDTH = 0.35
KEEP = (0, 1, 3, 4, 8, 9)  # of Small's 11 blocks: every stride-2 block, a residual in each of the last two stages
CLASSES = ["shirt", "bag", "boot"]
SUFFIX = {"onnx": ".onnx", "executorch": ".pte", "litert": ".tflite"}
needs_onnx = pytest.mark.skipif(
    not runtimes.available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'"
)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _random(name: str, num_classes: int, *, minimal: bool = False) -> nn.Module:
    """A fixed-seed randomised network (random BN terms and biases, statistics measured on images) whose outputs vary with the input.

    Export time grows with the number of ops, not with pixels or channels, so this is the registered network at
    width 0.35 cut to six of its eleven blocks, which still hold every kind the export handles (SE and plain blocks,
    ReLU and h-swish, residual adds, the segmenter's dilated tail), under the task's head; a detector keeps one of its
    four extra layers (C4, C5 and one extra map: every anchor layer kind, and no 1x1 maps repeated at 64 px).
    ``minimal`` drops SE and h-swish, for the tests of what happens around the export rather than of its graph.
    """
    spec = mnv3.create_model(name, num_classes=num_classes, width=WIDTH, minimal=minimal).spec
    spec = spec.replace(blocks=tuple(spec.blocks[i] for i in KEEP))
    if (det := spec.detection) is not None:
        anchors = dataclasses.replace(det.anchors, num_layers=3)
        det = dataclasses.replace(
            det, extra_depths=det.extra_depths[:1], extra_mid_depths=det.extra_mid_depths[:1], anchors=anchors
        )
        spec = spec.replace(detection=det)
    torch.manual_seed(0)
    return randomize_(mnv3.create_model(spec), seed=0, images=_images(8, 3))


@pytest.fixture(scope="module")
def detector() -> nn.Module:
    return _random(DET, len(CLASSES) + 1)


@pytest.fixture(scope="module")
def plain_detector() -> nn.Module:
    """A detector without SE and h-swish: half the ops to export, for the tests of calibration data and atomic writes."""
    return _random(DET, len(CLASSES) + 1, minimal=True)


@pytest.fixture(scope="module")
def segmenter() -> nn.Module:
    return _random(SEG, len(CLASSES))


@pytest.fixture(scope="module")
def weights(
    tmp_path_factory: pytest.TempPathFactory, detector: nn.Module, plain_detector: nn.Module, segmenter: nn.Module
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dense")
    pp = Preprocessing(resize=SIZE, crop=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    nets = {"det": detector, "plain-det": plain_detector, "seg": segmenter}
    return {k: save_weights(m, root / f"{k}.safetensors", WeightsMeta(pp, CLASSES)) for k, m in nets.items()}


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "warning:" not in line]
    assert len(err) == 1 and err[0].startswith("mnv3 export: error: "), err
    return err[0]


def _formats() -> list:
    """Every format, the ones whose runtime is absent skipped with the install command."""
    return [
        pytest.param(
            f,
            marks=pytest.mark.skipif(
                not runtimes.available(f),
                reason=f"{f} not installed: pip install 'mnv3[{runtimes.EXTRAS[runtimes.Format(f)].name}]'",
            ),
        )
        for f in ("executorch", "litert")
    ]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", _formats())
def test_detector_fp32_matches_pytorch(fmt: str, detector: nn.Module, tmp_path: Path):
    det = export_detector(detector, tmp_path / f"det{SUFFIX[fmt]}", fmt, resolution=SIZE)
    assert det.parity is not None and det.parity.max_abs <= 1e-4 and det.parity.top1_agreement == 1.0
    assert det.graph is not None and det.graph.ok
    anchors = np.load(tmp_path / "det.anchors.npy")
    assert np.array_equal(anchors, detector.anchors((SIZE, SIZE)).numpy())
    meta = json.loads((tmp_path / "det.metadata.json").read_text())
    assert meta["mnv3.task"] == "detection" and "det.anchors.npy" in meta["mnv3.anchors"]
    x = _images(2, 7)  # the file's own outputs, in PyTorch's order, at another input
    bbox, logits = load_predictor(fmt, tmp_path / f"det{SUFFIX[fmt]}").predict_outputs(x)
    with torch.no_grad():
        ref = RawDetector(detector)(x)
    assert bbox.shape == (2, len(anchors), 4) and np.abs(bbox - ref[0].numpy()).max() < 1e-4
    assert np.abs(logits - ref[1].numpy()).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("fmt", _formats())
def test_segmenter_fp32_matches_pytorch(fmt: str, segmenter: nn.Module, tmp_path: Path):
    seg = export_segmenter(segmenter, tmp_path / f"seg{SUFFIX[fmt]}", fmt, resolution=SIZE)
    assert seg.parity is not None and seg.parity.max_abs <= 1e-4 and seg.parity.agreement_of == "per-pixel argmax"
    assert seg.graph is not None and seg.graph.ok
    x = _images(2, 7)
    (out,) = load_predictor(fmt, tmp_path / f"seg{SUFFIX[fmt]}").predict_outputs(x)
    with torch.no_grad():
        ref = segmenter(x).numpy()
    assert out.shape == (2, len(CLASSES), SIZE, SIZE) and np.abs(out - ref).max() < 1e-4


@needs_onnx
def test_cli_exports_a_detector_to_onnx_with_anchors_and_metadata(
    weights: dict[str, Path], detector: nn.Module, tmp_path: Path, capsys
):
    import onnxruntime as ort

    out = tmp_path / "det.onnx"
    assert main(["export", "--weights", str(weights["det"]), "--format", "onnx", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resolution"] == SIZE and report["parity"]["max_abs"] <= 1e-4
    assert report["parity"]["agreement_of"] == "per-anchor class" and report["graph"]["problems"] == []
    assert np.array_equal(np.load(tmp_path / "det.anchors.npy"), detector.anchors((SIZE, SIZE)).numpy())
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["bbox_regression", "cls_logits"]
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["mnv3.categories"]) == CLASSES and json.loads(meta["mnv3.preprocessing"])["crop"] == SIZE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.anchors.npy", "det.onnx"]


@needs_onnx
def test_cli_exports_a_segmenter_to_onnx_with_full_size_logits(
    weights: dict[str, Path], segmenter: nn.Module, tmp_path: Path, capsys
):
    import onnxruntime as ort

    out = tmp_path / "seg.onnx"
    assert main(["export", "--weights", str(weights["seg"]), "--format", "onnx", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "per-pixel argmax agreement 100.0 %" in text and f"logits (N, {len(CLASSES)}, {SIZE}, {SIZE})" in text
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["mnv3.task"] == "segmentation" and json.loads(meta["mnv3.categories"]) == CLASSES
    x = _images(2, 9)
    (logits,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = segmenter(x).numpy()
    assert logits.shape == (2, len(CLASSES), SIZE, SIZE) and np.abs(logits - ref).max() < 1e-4


@needs_onnx
def test_int8_onnx_agrees_with_fp32(detector: nn.Module, segmenter: nn.Module, tmp_path: Path):
    calib = _images(16, 11)
    det = export_detector(detector, tmp_path / "det.onnx", resolution=SIZE, int8=True, calibration=calib)
    assert det.precision == "int8" and det.parity is not None and det.parity.top1_agreement >= 0.6, det.summary()
    assert (tmp_path / "det.anchors.npy").is_file()
    seg = export_segmenter(segmenter, tmp_path / "seg.onnx", resolution=SIZE, int8=True, calibration=calib)
    assert seg.parity is not None and seg.parity.top1_agreement >= 0.6, seg.summary()


@needs_onnx
def test_cli_int8_detector_calibrates_on_fashion_scenes(weights: dict[str, Path], tmp_path: Path, capsys, monkeypatch):
    from mnv3.data import fashion_mnist as fm

    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    monkeypatch.setenv("MNV3_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "det-int8.onnx"
    argv = ["export", "--weights", str(weights["plain-det"]), "--format", "onnx", "-o", str(out), "--int8"]
    assert main([*argv, "--calibration", "fashion-scenes", "--calibration-images", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "int8" and report["parity"]["samples"] == 8 and 0 <= report["parity"]["top1_agreement"] <= 1
    assert (tmp_path / "det-int8.anchors.npy").is_file() and len(list((tmp_path / "cache").glob("fashion-scenes-0-8-0"))) == 1


@needs_onnx
def test_cli_bad_inputs_are_one_line_and_write_nothing(weights: dict[str, Path], tmp_path: Path, capsys):
    out = str(tmp_path / "m.onnx")
    seg, det = ["export", "--weights", str(weights["seg"])], ["export", "--weights", str(weights["det"])]
    line = _one_error_line([*seg, "--format", "onnx", "-o", out, "--int8", "--calibration", "fashion-mnist"], capsys)
    assert "segmenter calibrates on scenes" in line and "fashion-scenes" in line
    line = _one_error_line([*det, "--format", "onnx", "-o", out, "--eval-data", "fashion-mnist"], capsys)
    assert "--eval-data" in line and "classifiers" in line
    assert "needs --calibration" in _one_error_line([*det, "--format", "onnx", "-o", out, "--int8"], capsys)
    assert "does not exist" in _one_error_line(
        [*seg, "--format", "onnx", "-o", out, "--int8", "--calibration", str(tmp_path / "no")], capsys
    )
    assert "should end in .pte" in _one_error_line([*seg, "--format", "executorch", "-o", out], capsys)
    assert "smaller than the network's total stride" in _one_error_line(
        [*det, "--format", "onnx", "-o", out, "--resolution", "8"], capsys
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_is_one_line_naming_the_extra(weights: dict[str, Path], tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(runtimes, "missing_modules", lambda fmt: ["ai_edge_litert"])
    line = _one_error_line(
        ["export", "--weights", str(weights["seg"]), "--format", "litert", "-o", str(tmp_path / "s.tflite")], capsys
    )
    assert "pip install 'mnv3[litert]'" in line and list(tmp_path.iterdir()) == []


@needs_onnx
def test_failed_check_writes_nothing_and_keeps_the_old_files(plain_detector: nn.Module, tmp_path: Path):
    (tmp_path / "det.onnx").write_bytes(b"old")
    with pytest.raises(ValueError, match="differs from PyTorch"):
        export_detector(plain_detector, tmp_path / "det.onnx", resolution=SIZE, tolerance=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.onnx"] and (tmp_path / "det.onnx").read_bytes() == b"old"
    with pytest.raises(ValueError, match="takes an mnv3 segmenter"):
        export_segmenter(plain_detector, tmp_path / "x.onnx")
