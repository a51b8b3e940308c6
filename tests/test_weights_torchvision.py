"""torchvision <-> mnv3: converted logits equal torchvision's, and the round trip is bit-exact."""

from __future__ import annotations

import pytest
import torch
import torchvision

import mnv3
from mnv3.models.testing import randomize_
from mnv3.spec.conventions import Preset
from mnv3.weights import convert_checkpoint, mnv3_to_torchvision, save_torchvision
from mnv3.weights.load import resolve_model

VARIANTS = [
    ("mobilenet_v3_large", "mobilenetv3_large_100", torchvision.models.mobilenet_v3_large),
    ("mobilenet_v3_small", "mobilenetv3_small_100", torchvision.models.mobilenet_v3_small),
]


def _source(fn, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_(fn(), seed, linear_gain=3)


@pytest.mark.parametrize(("tv_name", "name", "fn"), VARIANTS, ids=[v[1] for v in VARIANTS])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_converted_logits_match_torchvision(tmp_path, tv_name, name, fn, suffix) -> None:
    src = _source(fn, 1)
    path = tmp_path / f"tv{suffix}"
    if suffix == ".pth":
        torch.save(src.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model, meta = convert_checkpoint(path, "torchvision", name)
    assert model.spec.conventions == mnv3.spec.get_preset("torchvision")
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, ours = src(x), model(x)
    assert (ref - ours).abs().max().item() <= 1e-4
    assert torch.equal(ref.argmax(1), ours.argmax(1))
    assert ref.std() > 0.1  # the logits are not degenerate
    assert meta.preprocessing == mnv3.weights.IMAGENET and len(meta.categories) == 1000
    # the library's own model name resolves to the same network and preset
    assert resolve_model("torchvision", tv_name) == (name, Preset.TORCHVISION)


@pytest.mark.parametrize(("tv_name", "name", "fn"), VARIANTS, ids=[v[1] for v in VARIANTS])
def test_round_trip_is_bit_exact(tmp_path, tv_name, name, fn) -> None:
    src = _source(fn, 3)
    original = src.state_dict()
    torch.save(original, tmp_path / "in.pth")
    model, _ = convert_checkpoint(tmp_path / "in.pth", "torchvision", name)
    back = mnv3_to_torchvision(model)
    assert list(back) == list(original)  # same keys in the same order
    for k, v in original.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    # through a file, loaded by torchvision itself
    save_torchvision(model, tmp_path / "out.pth")
    fresh = fn()
    fresh.load_state_dict(torch.load(tmp_path / "out.pth", weights_only=True))
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_other_variant_names_mismatches_and_suggests(tmp_path) -> None:
    torch.save(_source(torchvision.models.mobilenet_v3_small, 0).state_dict(), tmp_path / "small.pth")
    with pytest.raises(ValueError) as err:
        convert_checkpoint(tmp_path / "small.pth", "torchvision", "mobilenetv3_large_100")
    msg = str(err.value)
    assert "does not fit mobilenetv3_large_100" in msg
    # the first mismatching tensor, by its torchvision name: Small block 2 expands to 72, Large to 64
    assert "features.2.block.0.0.weight has shape [72, 16, 1, 1], but blocks.1.expand.conv.weight needs [64, 16, 1, 1]" in msg
    assert "--model mobilenetv3_small_100" in msg


def test_width_variant_is_suggested(tmp_path) -> None:
    torch.save(_source(lambda: torchvision.models.mobilenet_v3_large(width_mult=0.75), 0).state_dict(), tmp_path / "l075.pth")
    with pytest.raises(ValueError, match="fits mobilenetv3_large_075"):
        convert_checkpoint(tmp_path / "l075.pth", "torchvision", "mobilenetv3_large_100")
    model, _ = convert_checkpoint(tmp_path / "l075.pth", "torchvision", "mobilenetv3_large_075")
    assert model.spec.blocks[-1].out == 120


def test_truncated_and_foreign_files_are_clear_errors(tmp_path) -> None:
    torch.save(_source(torchvision.models.mobilenet_v3_small, 0).state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert_checkpoint(tmp_path / "cut.pth", "torchvision", "mobilenetv3_small_100")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision MobileNetV3 state dict"):
        convert_checkpoint(tmp_path / "other.pth", "torchvision", "mobilenetv3_small_100")
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "missing.pth", "torchvision", "mobilenetv3_small_100")


def test_torchvision_format_refuses_networks_torchvision_cannot_express() -> None:
    with pytest.raises(ValueError, match="preset='torchvision'"):
        mnv3_to_torchvision(mnv3.create_model("mobilenetv3_large_100", preset="paper"))
    with pytest.raises(ValueError, match="minimalistic"):
        mnv3_to_torchvision(mnv3.create_model("mobilenetv3_large_minimal_100", preset="torchvision"))
