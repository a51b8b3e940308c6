"""``mnv3 predict`` on real photos prints the source model's top-5 (torchvision, Keras, Fashion-MNIST-style)."""

from __future__ import annotations

import json
import os
import re

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported anywhere in this process

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.transforms import v2 as T  # noqa: E402

import mnv3  # noqa: E402
from mnv3.cli.main import main  # noqa: E402
from mnv3.models.testing import randomize_  # noqa: E402
from mnv3.utils.preprocessing import Preprocessing  # noqa: E402
from mnv3.weights import WeightsMeta, save_weights  # noqa: E402

skimage_data = pytest.importorskip("skimage.data")

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real photos from scikit-image, written with PIL in three formats, plus a grayscale one."""
    root = tmp_path_factory.mktemp("img")
    paths = []
    for name, fmt in (("astronaut", "png"), ("coffee", "jpeg"), ("chelsea", "bmp")):
        path = root / f"{name}.{fmt}"
        Image.fromarray(getattr(skimage_data, name)()).save(path)
        paths.append(path)
    path = root / "camera.png"
    Image.fromarray(skimage_data.camera()).save(path)  # mode L: predicted as RGB
    paths.append(path)
    return paths


def _parse(text: str) -> dict[str, list[int]]:
    """{image: [class indices in rank order]} from predict's text output."""
    out: dict[str, list[int]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s+\d+\. \[\s*(\d+)\] ([0-9.]+)  (.*)", line)
        if m:
            out[current].append(int(m.group(1)))
        else:
            current = line.strip()
            out[current] = []
    return out


def _top(logits: torch.Tensor, k: int = 5) -> list[int]:
    return logits.softmax(-1).topk(k).indices.tolist()


def test_predict_torchvision_weights_match_torchvision(tmp_path, images, capsys) -> None:
    torch.manual_seed(0)
    src = randomize_(torchvision.models.mobilenet_v3_small(), seed=3, linear_gain=3)
    torch.save(src.state_dict(), tmp_path / "tv.pth")
    out = tmp_path / "tv.safetensors"
    assert main(["convert", "--from", "torchvision", str(tmp_path / "tv.pth"), "--model", "mobilenetv3_small_100", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", *map(str, images), "--weights", str(out), "--topk", "5"]) == 0
    printed = _parse(capsys.readouterr().out)
    # the reference: torchvision's own preprocessing preset and model
    preset = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms()
    categories = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.meta["categories"]
    for path in images:
        with torch.no_grad():
            ref = src(preset(Image.open(path).convert("RGB")).unsqueeze(0))[0]
        assert printed[str(path)] == _top(ref), path.name
    # labels are the ImageNet names
    capsys.readouterr()
    main(["predict", str(images[0]), "--weights", str(out), "--json", "--topk", "3"])
    row = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        ref = src(preset(Image.open(images[0]).convert("RGB")).unsqueeze(0))[0].softmax(-1)
    assert [t["index"] for t in row["top"]] == ref.topk(3).indices.tolist()
    assert [t["label"] for t in row["top"]] == [categories[t["index"]] for t in row["top"]]
    assert np.allclose([t["prob"] for t in row["top"]], ref.topk(3).values.numpy(), atol=1e-5)


def test_predict_with_a_checkpoint_and_a_non_image(tmp_path, images, capsys) -> None:
    torch.manual_seed(1)
    src = randomize_(torchvision.models.mobilenet_v3_small(), seed=4)
    torch.save(src.state_dict(), tmp_path / "tv.pth")
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    rc = main(["predict", str(images[1]), str(bad), str(images[2]), "--weights", str(tmp_path / "tv.pth"), "--model", "mobilenet_v3_small"])
    captured = capsys.readouterr()
    assert rc == 2
    assert f"mnv3 predict: error: {bad}: not a readable image" in captured.err
    printed = _parse(captured.out)
    assert set(printed) == {str(images[1]), str(images[2])}  # the others were still predicted
    preset = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        ref = src(preset(Image.open(images[2]).convert("RGB")).unsqueeze(0))[0]
    assert printed[str(images[2])] == _top(ref)
    # no --model: the checkpoint's library and shapes tell the network, with the same result
    assert main(["predict", str(images[2]), "--weights", str(tmp_path / "tv.pth")]) == 0
    assert _parse(capsys.readouterr().out)[str(images[2])] == _top(ref)
    assert main(["predict", str(images[2]), "--weights", str(tmp_path / "tv.pth"), "--preset", "paper"]) == 2
    assert "only under preset 'torchvision'" in capsys.readouterr().err


def test_predict_keras_weights_match_keras(tmp_path, images, capsys) -> None:
    keras = pytest.importorskip("keras")
    from test_weights_keras import build_random_keras

    src = build_random_keras("mobilenetv3_small_075", seed=5)
    src.save_weights(tmp_path / "k.weights.h5")
    out = tmp_path / "k.safetensors"
    assert main(["convert", "--from", "keras", str(tmp_path / "k.weights.h5"), "--model", "mobilenetv3_small_075", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["predict", *map(str, images), "--weights", str(out)]) == 0
    printed = _parse(capsys.readouterr().out)
    crop = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(224)])
    for path in images:
        # Keras gets the resized, cropped [0, 255] pixels and rescales them inside the model
        pixels = np.asarray(crop(Image.open(path).convert("RGB")), dtype="float32")[None]
        ref = torch.from_numpy(keras.ops.convert_to_numpy(src(pixels, training=False))[0])
        assert printed[str(path)] == _top(ref), path.name


def test_predict_grayscale_fashion_mnist_file(tmp_path, images, capsys) -> None:
    """A training run's file: 1 channel, 10 Fashion-MNIST classes, grayscale preprocessing in the metadata."""
    model = randomize_(mnv3.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1), seed=6)
    prep = Preprocessing(resize=40, crop=32, interpolation="bilinear", mean=(0.2860,), std=(0.3530,), grayscale=True)
    save_weights(model, tmp_path / "fm.safetensors", WeightsMeta(preprocessing=prep, categories=FASHION))
    assert main(["predict", str(images[0]), str(images[3]), "--weights", str(tmp_path / "fm.safetensors"), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    printed = _parse(out)
    for path in (images[0], images[3]):
        img = Image.open(path).convert("L")
        img = torchvision.transforms.functional.center_crop(torchvision.transforms.functional.resize(img, 40), 32)
        x = (torch.from_numpy(np.asarray(img, dtype="float32") / 255.0) - 0.2860) / 0.3530
        with torch.no_grad():
            ref = model(x[None, None])[0]
        assert printed[str(path)] == _top(ref, 3)
    assert FASHION[printed[str(images[0])][0]] in out
