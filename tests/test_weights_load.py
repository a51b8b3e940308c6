"""load_weights_into / create_model(weights=...): mnv3 files, foreign checkpoints, presets, fine-tuning."""

from __future__ import annotations

import pytest
import torch
import torchvision

import mnv3
from mnv3.models.testing import randomize_
from mnv3.utils.preprocessing import Preprocessing
from mnv3.weights import WeightsMeta, load_weights_into, model_from_file, save_weights


@pytest.fixture(scope="module")
def tv_small(tmp_path_factory):
    torch.manual_seed(0)
    src = randomize_(torchvision.models.mobilenet_v3_small(), seed=7)
    path = tmp_path_factory.mktemp("tv") / "small.pth"
    torch.save(src.state_dict(), path)
    return src, path


def test_create_model_with_a_foreign_checkpoint(tv_small) -> None:
    src, path = tv_small
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - src(x)).abs().max() <= 1e-4
    assert model.weights_meta.source.endswith("small.pth")


def test_foreign_checkpoint_decides_its_preset(tv_small) -> None:
    """No preset given: the torchvision checkpoint builds under torchvision's; a contradicting one is refused."""
    src, path = tv_small
    model = mnv3.create_model("mobilenetv3_small_100", weights=path).eval()
    assert model.spec.conventions == mnv3.spec.get_preset("torchvision")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - src(x)).abs().max() <= 1e-4
    with pytest.raises(ValueError, match=r"only under preset 'torchvision', not 'paper'"):
        mnv3.create_model("mobilenetv3_small_100", preset="paper", weights=path)
    model_in = mnv3.create_model("mobilenetv3_small_100")  # paper preset, built first
    with pytest.raises(ValueError, match=r"preset='torchvision'.*padding tf_same, BN eps 0.001"):
        load_weights_into(model_in, path)


def test_other_class_count_keeps_the_backbone(tv_small) -> None:
    src, path = tv_small
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", num_classes=10, weights=path)
    assert torch.equal(model.head_conv.conv.weight, src.features[12][0].weight)
    assert torch.equal(model.head_hidden.weight, src.classifier[0].weight)
    assert model.classifier.weight.shape == (10, 1024)
    assert model.weights_meta.categories == []


def test_mnv3_file_round_trip_and_spec_check(tmp_path, tv_small) -> None:
    _, path = tv_small
    model, meta = mnv3.weights.convert_checkpoint(path, "torchvision", "mobilenetv3_small_100")
    out = save_weights(model, tmp_path / "small.safetensors", meta)
    again = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", weights=out)
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    assert again.weights_meta.categories == meta.categories
    again = mnv3.create_model("mobilenetv3_small_100", weights=out)  # the file carries its preset
    assert again.spec.conventions == model.spec.conventions
    with pytest.raises(ValueError, match=r"under the torchvision conventions, not preset 'paper'"):
        mnv3.create_model("mobilenetv3_small_100", preset="paper", weights=out)
    with pytest.raises(ValueError, match="holds mobilenetv3_small_100, not mobilenetv3_large_100"):
        mnv3.create_model("mobilenetv3_large_100", preset="torchvision", weights=out)
    with pytest.raises(ValueError, match=r"create_model\('mobilenetv3_small_100', preset='torchvision'"):
        load_weights_into(mnv3.create_model("mobilenetv3_small_100"), out)


def test_grayscale_metadata_round_trips(tmp_path) -> None:
    model = mnv3.create_model("mobilenetv3_small_050", num_classes=10, in_chans=1)
    prep = Preprocessing(resize=32, crop=28, mean=(0.286,), std=(0.353,), grayscale=True)
    meta = WeightsMeta(preprocessing=prep, categories=[f"c{i}" for i in range(10)])
    save_weights(model, tmp_path / "g.safetensors", meta)
    back, back_meta = model_from_file(tmp_path / "g.safetensors")
    assert back.spec == model.spec and back_meta.preprocessing == prep and back_meta.categories == meta.categories


def test_preprocessing_for_channels_averages_rgb_for_one_channel() -> None:
    rgb = Preprocessing(resize=40, crop=32, mean=(0.3, 0.4, 0.5), std=(0.1, 0.2, 0.3))
    assert rgb.for_channels(3) is rgb
    gray = rgb.for_channels(1)
    assert gray.grayscale and (gray.resize, gray.crop) == (40, 32)
    torch.testing.assert_close(torch.tensor(gray.mean + gray.std), torch.tensor([0.4, 0.2]))
    back = gray.for_channels(3)  # one channel spread over three (a grayscale net fed RGB tensors)
    assert not back.grayscale and back.mean == gray.mean * 3 and back.std == gray.std * 3


def test_missing_weights_name_or_file() -> None:
    model = mnv3.create_model("mobilenetv3_small_100")
    with pytest.raises(FileNotFoundError, match="not a named weights entry"):
        load_weights_into(model, "mobilenetv3_small_100.nope")
    with pytest.raises(FileNotFoundError):
        load_weights_into(model, "/nonexistent/file.pth")


def test_grayscale_fine_tuning_sums_the_stem(tv_small) -> None:
    """RGB weights into a 1-channel, 10-class model (Fashion-MNIST fine-tuning): stem summed over channels."""
    src, path = tv_small
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", num_classes=10, in_chans=1, weights=path)
    assert torch.equal(model.stem.conv.weight, src.features[0][0].weight.sum(1, keepdim=True))
    assert torch.equal(model.blocks[0].dw.conv.weight, src.features[1].block[0][0].weight)
    # a gray image through the summed stem equals the RGB stem on the replicated image (before BN)
    g = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model.stem.conv(g), src.features[0][0](g.expand(1, 3, 32, 32)))
    prep = model.weights_meta.preprocessing
    assert prep.grayscale and len(prep.mean) == len(prep.std) == 1
    assert prep == Preprocessing().for_channels(1)  # torchvision's ImageNet mean / std, channel-averaged
