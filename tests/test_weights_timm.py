"""timm -> mnv3: every timm MobileNetV3 variant (own and TF ports, minimal included) gives timm's logits."""

from __future__ import annotations

import pytest
import torch

import mnv3
from mnv3.models.testing import randomize_
from mnv3.spec.conventions import Preset
from mnv3.weights import convert_checkpoint
from mnv3.weights.load import resolve_model

timm = pytest.importorskip("timm")

# timm name -> (mnv3 name, preset); the tf_ ports are the paper (TF-slim) conventions
VARIANTS = {
    "mobilenetv3_large_075": ("mobilenetv3_large_075", "timm"),
    "mobilenetv3_large_100": ("mobilenetv3_large_100", "timm"),
    "mobilenetv3_small_050": ("mobilenetv3_small_050", "timm"),
    "mobilenetv3_small_075": ("mobilenetv3_small_075", "timm"),
    "mobilenetv3_small_100": ("mobilenetv3_small_100", "timm"),
    "tf_mobilenetv3_large_075": ("mobilenetv3_large_075", "paper"),
    "tf_mobilenetv3_large_100": ("mobilenetv3_large_100", "paper"),
    "tf_mobilenetv3_large_minimal_100": ("mobilenetv3_large_minimal_100", "paper"),
    "tf_mobilenetv3_small_075": ("mobilenetv3_small_075", "paper"),
    "tf_mobilenetv3_small_100": ("mobilenetv3_small_100", "paper"),
    "tf_mobilenetv3_small_minimal_100": ("mobilenetv3_small_minimal_100", "paper"),
}
# all-ReLU nets with random weights already give logits of std 10-20: their classifier keeps unit
# gain; the others get gain 3 so that their logits are O(1) and the 1e-4 bound means something
CLASSIFIER_GAIN = {"tf_mobilenetv3_large_minimal_100": 1.0, "tf_mobilenetv3_small_minimal_100": 1.0}


def _save(src: torch.nn.Module, path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save({"state_dict": src.state_dict(), "epoch": 3}, path)  # a timm train.py-style wrapper


@pytest.mark.parametrize("timm_name", list(VARIANTS))
def test_converted_logits_match_timm(tmp_path, timm_name) -> None:
    name, preset = VARIANTS[timm_name]
    torch.manual_seed(0)
    src = randomize_(timm.create_model(timm_name, pretrained=False), seed=1, linear_gain=CLASSIFIER_GAIN.get(timm_name, 3.0))
    path = tmp_path / ("w.safetensors" if timm_name.startswith("tf_") else "w.pth")
    _save(src, path)
    model, meta = convert_checkpoint(path, "timm", name, preset=preset)
    # the timm name resolves to the same network and preset on its own
    assert resolve_model("timm", timm_name) == (name, Preset(preset))
    assert model.spec.conventions == mnv3.spec.get_preset(preset)
    sizes = (64, 57) if preset == "paper" else (64,)  # odd sizes exercise TF 'SAME' padding on both parities
    for size in sizes:
        x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            ref, ours = src(x), model(x)
        assert (ref - ours).abs().max().item() <= 1e-4, size
        assert torch.equal(ref.argmax(1), ours.argmax(1))
        assert ref.std() > 0.1
    expected_mean = (0.5, 0.5, 0.5) if preset == "paper" else (0.485, 0.456, 0.406)
    assert meta.preprocessing.mean == expected_mean


def test_timm_checkpoint_of_another_width_is_named(tmp_path) -> None:
    src = randomize_(timm.create_model("mobilenetv3_small_050"))
    torch.save(src.state_dict(), tmp_path / "s050.pth")
    with pytest.raises(ValueError) as err:
        convert_checkpoint(tmp_path / "s050.pth", "timm", "mobilenetv3_small_100")
    msg = str(err.value)
    assert "blocks.0.0.conv_pw.weight has shape [8, 16, 1, 1], but blocks.0.project.conv.weight needs [16, 16, 1, 1]" in msg
    assert "fits mobilenetv3_small_050" in msg


def test_timm_preset_must_be_a_timm_one(tmp_path) -> None:
    torch.save(timm.create_model("mobilenetv3_small_100").state_dict(), tmp_path / "s.pth")
    with pytest.raises(ValueError, match="only under preset"):
        convert_checkpoint(tmp_path / "s.pth", "timm", "mobilenetv3_small_100", preset="keras")
