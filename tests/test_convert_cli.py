"""``mnv3 convert``: checkpoints in, verified mnv3 safetensors out (and back to torchvision)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from mnv3.cli.main import main
from mnv3.models.testing import randomize_
from mnv3.weights import model_from_file

timm = pytest.importorskip("timm")


@pytest.fixture(scope="module")
def tv_large(tmp_path_factory):
    torch.manual_seed(0)
    src = randomize_(torchvision.models.mobilenet_v3_large(), seed=11)
    path = tmp_path_factory.mktemp("tv") / "large.pth"
    torch.save(src.state_dict(), path)
    return src, path


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_convert_torchvision_and_back(tmp_path, tv_large, capsys) -> None:
    src, path = tv_large
    out = tmp_path / "large.safetensors"
    assert main(["convert", "--from", "torchvision", str(path), "--model", "mobilenetv3_large_100", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model, meta = model_from_file(out)  # the file carries its spec: nothing else is needed
    x = torch.randn(2, 3, 64, 64)
    assert (_logits(model, x) - _logits(src, x)).abs().max() <= 1e-4
    assert meta.preprocessing.resize == 256 and len(meta.categories) == 1000
    back = tmp_path / "back.pth"
    assert main(["convert", "--to", "torchvision", str(out), "-o", str(back)]) == 0
    restored = torch.load(back, weights_only=True)
    original = src.state_dict()
    assert list(restored) == list(original) and all(torch.equal(restored[k], v) for k, v in original.items())


def test_convert_meta_from_a_named_entry(tmp_path, tv_large) -> None:
    _, path = tv_large
    out = tmp_path / "v2.safetensors"
    args = ["convert", "--from", "torchvision", str(path), "--model", "mobilenet_v3_large", "-o", str(out)]
    assert main([*args, "--meta-from", "mobilenetv3_large_100.torchvision_v2"]) == 0
    _, meta = model_from_file(out)
    assert meta.preprocessing.resize == 232 and meta.metrics["top1"]["value"] == 75.274
    assert main([*args, "--meta-from", "mobilenetv3_large_100.tf"]) == 2  # paper preset, not torchvision


def test_convert_timm_port_by_its_timm_name(tmp_path, capsys) -> None:
    src = randomize_(timm.create_model("tf_mobilenetv3_small_minimal_100"), seed=2)
    torch.save(src.state_dict(), tmp_path / "t.pth")
    out = tmp_path / "t.safetensors"
    assert main(["convert", "--from", "timm", str(tmp_path / "t.pth"), "--model", "tf_mobilenetv3_small_minimal_100", "-o", str(out)]) == 0
    model, meta = model_from_file(out)
    assert model.spec.name == "mobilenetv3_small_minimal_100" and model.spec.conventions.padding.value == "tf_same"
    assert meta.preprocessing.mean == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 57, 57)
    assert (_logits(model, x) - _logits(src, x)).abs().max() <= 1e-4


def test_convert_errors_exit_2_and_keep_existing_output(tmp_path, tv_large, capsys) -> None:
    _, path = tv_large
    out = tmp_path / "keep.safetensors"
    out.write_bytes(b"previous result")
    rc = main(["convert", "--from", "torchvision", str(path), "--model", "mobilenetv3_small_100", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mnv3 convert: error:")
    assert "does not fit mobilenetv3_small_100" in err and "--model mobilenetv3_large_100" in err
    assert out.read_bytes() == b"previous result"
    inferred = tmp_path / "inferred.safetensors"  # no --model: the checkpoint's shapes tell it
    assert main(["convert", "--from", "torchvision", str(path), "-o", str(inferred)]) == 0
    assert model_from_file(inferred)[0].spec.name == "mobilenetv3_large_100"
    assert main(["convert", "--from", "timm", str(path), "-o", str(tmp_path / "t.safetensors")]) == 2
    assert "not a timm MobileNetV3 state dict" in capsys.readouterr().err
    assert main(["convert", "--from", "torchvision", str(path), "--model", "mobilenetv3_large_100", "-o", str(tmp_path / "x.pth")]) == 2
    assert "safetensors" in capsys.readouterr().err
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 100)
    assert main(["convert", "--from", "torchvision", str(tmp_path / "junk.pth"), "--model", "mobilenetv3_large_100", "-o", str(out)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
