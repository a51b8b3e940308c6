"""int8: per-channel PTQ of Small agrees with fp32 on top-1; calibration data; quantization-aware training.

Agreement is only meaningful on a network whose top-1 is decided by real margins: a random
network's logits differ by less than the int8 noise (measured: 45-70 % agreement). So the module
first trains MobileNetV3-Small (paper preset, TF-SAME padding) on Fashion-MNIST at 32x32 for
120 steps (about 80 % test accuracy, 10-20 s) and quantizes that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import available
from mnv3.deploy.calibration import calibration_images
from mnv3.deploy.export import export_model
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights.io import WeightsMeta, save_weights

RES = 32
skdata = pytest.importorskip("skimage.data")
SAMPLES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "colorwheel",
)
needs_onnx = pytest.mark.skipif(not available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'")
needs_litert = pytest.mark.skipif(not available("litert"), reason="LiteRT is not installed: pip install 'mnv3[litert]'")
needs_et = pytest.mark.skipif(not available("executorch"), reason="ExecuTorch is not installed: pip install 'mnv3[executorch]'")


@pytest.fixture(scope="module")
def fashion():
    """(train images, train labels, test images, test labels), preprocessed at RES like the trained model's metadata says."""
    from mnv3.data import fashion_mnist as fm

    try:
        x, y = fm.load_split("train")
        xt, yt = fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST is not installed ({e})")

    def prep(u8: torch.Tensor) -> torch.Tensor:
        return (F.interpolate(u8[:, None].float() / 255, size=RES, mode="bilinear", align_corners=False) - fm.MEAN) / fm.STD

    return x, y, prep, prep(xt[:400]), yt[:400]


def _train_small(fashion) -> torch.nn.Module:
    x, y, prep, xt, yt = fashion
    torch.manual_seed(0)
    # the paper preset: its TF-SAME pads go through share_quantization_across_pads_ in every int8 flow
    model = mnv3.create_model("mobilenetv3_small_100", num_classes=10, in_chans=1, preset="paper", bn_momentum=0.1)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(120):
        idx = torch.randint(0, len(x), (128,), generator=g)
        loss = F.cross_entropy(model(prep(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained(fashion, tmp_path_factory, worker_id):
    """MobileNetV3-Small (1 channel, 10 classes) after 120 Adam steps on Fashion-MNIST at 32x32.

    Trained once per session: pytest-xdist workers share it through the session's temporary folder.
    """
    from filelock import FileLock

    from mnv3.weights import model_from_file

    x, y, prep, xt, yt = fashion
    if worker_id == "master":
        model = _train_small(fashion)
    else:
        path = tmp_path_factory.getbasetemp().parent / "quant-trained-small.safetensors"
        with FileLock(str(path) + ".lock"):
            if not path.is_file():
                save_weights(_train_small(fashion), path)
            model = model_from_file(path)[0].eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean()
    assert acc > 0.6, f"the quick training reached only {acc:.2f}"
    return model, prep(x[:64])


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    for name in SAMPLES:
        img = Image.fromarray(getattr(skdata, name)()).convert("RGB")
        sub = root / ("a" if len(name) % 2 else "b")  # nested folders are searched too
        sub.mkdir(exist_ok=True)
        img.save(sub / f"{name}.png")
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(sub / f"{name}_flip.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_calibration_folder_reads_images_recursively(image_folder):
    images = calibration_images(image_folder, Preprocessing(resize=64, crop=64), in_chans=3, limit=64)
    assert images.shape == (20, 3, 64, 64) and images.dtype == torch.float32
    assert images.std() > 0.3  # normalised natural images, not blanks
    gray = calibration_images(image_folder, Preprocessing(resize=40, crop=32, mean=(0.5,), std=(0.5,)), in_chans=1, limit=4)
    assert gray.shape == (4, 1, 32, 32)


def test_calibration_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image files"):
        calibration_images(tmp_path, Preprocessing(), in_chans=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        calibration_images(tmp_path / "missing", Preprocessing(), in_chans=3)


@needs_onnx
def test_onnx_int8_small_agrees_with_fp32(trained, fashion, tmp_path):
    model, calib = trained
    *_, xt, yt = fashion
    report = export_model(model, tmp_path / "q.onnx", "onnx", resolution=RES, int8=True, calibration=calib, samples=xt)
    assert report.graph is not None and report.graph.ok, report.summary()
    assert report.parity is not None and report.parity.samples == len(xt)
    assert report.parity.top1_agreement >= 0.9, report.summary()
    assert (tmp_path / "q.onnx").stat().st_size < 0.35 * 6.0e6  # int8 weights: about a quarter of fp32


@needs_et
def test_executorch_int8_small_agrees_with_fp32(trained, fashion, tmp_path):
    model, calib = trained
    *_, xt, yt = fashion
    report = export_model(model, tmp_path / "q.pte", "executorch", resolution=RES, int8=True, calibration=calib, samples=xt[:200])
    assert report.graph is not None and report.graph.ok and report.graph.partitions == 1, report.summary()
    assert report.parity is not None and report.parity.top1_agreement >= 0.9, report.summary()


@needs_litert
def test_litert_int8_small_agrees_with_fp32(trained, fashion, tmp_path):
    model, calib = trained
    *_, xt, yt = fashion
    report = export_model(model, tmp_path / "q.tflite", "litert", resolution=RES, int8=True, calibration=calib, samples=xt[:200])
    assert report.graph is not None and report.graph.ok, report.summary()
    assert report.parity is not None and report.parity.top1_agreement >= 0.9, report.summary()


@needs_onnx
def test_cli_int8_with_fashion_mnist_calibration_and_accuracy(trained, tmp_path, capsys):
    model, _ = trained
    from mnv3.data import fashion_mnist as fm

    pp = Preprocessing(resize=RES, crop=RES, mean=(fm.MEAN,), std=(fm.STD,), grayscale=True)
    weights = save_weights(model, tmp_path / "fm.safetensors", WeightsMeta(preprocessing=pp, categories=list(fm.CLASSES)))
    out = tmp_path / "fm-int8.onnx"
    args = ["export", "mobilenetv3_small_100", "--weights", str(weights), "--format", "onnx", "-o", str(out), "--int8"]
    args += [
        "--calibration",
        "fashion-mnist",
        "--calibration-images",
        "64",
        "--eval-data",
        "fashion-mnist",
        "--eval-images",
        "300",
        "--json",
    ]
    assert main(args) == 0
    parity = json.loads(capsys.readouterr().out)["parity"]
    assert parity["eval_name"].startswith("Fashion-MNIST test (300 images)")
    assert parity["accuracy_torch"] > 0.6 and abs(parity["accuracy_drop"]) < 5.0  # points, on 300 images
    assert out.is_file()


@needs_et
def test_qat_trains_and_converts(trained, fashion):
    from mnv3.deploy.quantize import convert_qat, prepare_qat

    model, _ = trained
    x, y, prep, xt, yt = fashion
    before = model.classifier.weight.detach().clone()
    qat = prepare_qat(model, (xt[:4],))
    assert qat.spec == model.spec
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for step in range(12):
        idx = torch.randint(0, len(x), (64 - step,), generator=g)  # varying batch sizes: the batch dimension is dynamic
        loss = F.cross_entropy(qat(prep(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert np.isfinite(float(loss))
    qat.eval()
    with torch.no_grad():
        fake = qat(xt)
        real = convert_qat(qat)(xt)
        fp = qat.to_float()(xt)
    agree_fake = (fake.argmax(1) == real.argmax(1)).float().mean()
    agree_fp = (fp.argmax(1) == real.argmax(1)).float().mean()
    acc = (real.argmax(1) == yt).float().mean()
    acc_fp = (fp.argmax(1) == yt).float().mean()
    print(f"QAT: fake-quant vs int8 {agree_fake:.3f}, float vs int8 {agree_fp:.3f}, accuracy int8 {acc:.3f}, float {acc_fp:.3f}")
    assert agree_fake >= 0.9  # the int8 graph computes what the fake-quant network trained
    assert acc > 0.6 and acc_fp > 0.6 and agree_fp >= 0.65  # the float network carries the fine-tuned weights (measured 70 %)
    assert not torch.equal(qat.to_float().classifier.weight, before)
