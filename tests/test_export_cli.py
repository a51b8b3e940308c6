"""``mnv3 export`` end to end and its bad inputs: clear errors (exit 2) and nothing half-written."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import runtimes
from mnv3.deploy.export import build_artifact
from mnv3.models.testing import randomize_
from mnv3.weights.io import WeightsMeta, save_weights

needs_onnx = pytest.mark.skipif(
    not runtimes.available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'"
)


def _entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture()
def small_weights(tmp_path):
    model = randomize_(mnv3.create_model("mobilenetv3_small_100", num_classes=10), seed=2, images=torch.randn(8, 3, 64, 64))
    return save_weights(model, tmp_path / "small.safetensors", WeightsMeta(categories=[str(i) for i in range(10)])), model


@needs_onnx
def test_export_from_weights_file_writes_a_verified_file(small_weights, tmp_path, capsys):
    path, model = small_weights
    out = tmp_path / "out" / "small.onnx"
    rc = main(
        [
            "export",
            "mobilenetv3_small_100",
            "--weights",
            str(path),
            "--format",
            "onnx",
            "-o",
            str(out),
            "--resolution",
            "64",
            "--json",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["graph"]["problems"] == [] and report["parity"]["max_abs"] <= 1e-4
    assert report["parity"]["ref_max_abs"] > 0.1  # the stored weights were used, not a fresh init (logits ~1e-9)
    assert _entries(out.parent) == ["small.onnx"]  # no temporary files left


@needs_onnx
def test_export_without_weights_warns(tmp_path, capsys):
    out = tmp_path / "r.onnx"
    assert main(["export", "mobilenetv3_small_075", "--format", "onnx", "-o", str(out), "--resolution", "16"]) == 2
    err = capsys.readouterr().err
    assert "warning: no --weights given" in err and "randomly initialised" in err  # warned before the export started
    assert not out.exists()


def test_missing_runtime_names_the_install_command(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else real(name, *a))
    out = tmp_path / "m.pte"
    assert main(["export", "mobilenetv3_small_100", "--format", "executorch", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mnv3[executorch]'" in err and "executorch" in err
    assert not out.exists()
    with pytest.raises(runtimes.MissingRuntimeError):
        runtimes.require("executorch")


def test_weights_of_another_variant_is_refused(small_weights, tmp_path, capsys):
    path, _ = small_weights
    out = tmp_path / "l.onnx"
    assert main(["export", "mobilenetv3_large_100", "--weights", str(path), "--format", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds mobilenetv3_small_100, not mobilenetv3_large_100" in err
    assert not out.exists()


def test_int8_needs_calibration_and_calibration_needs_images(tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["export", "mobilenetv3_small_100", "--format", "onnx", "-o", str(out), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "labels.csv").write_text("a,b\n")
    args = ["export", "mobilenetv3_small_100", "--format", "onnx", "-o", str(out), "--int8", "--calibration", str(empty)]
    assert main(args) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert _entries(tmp_path) == ["empty"]


def test_failed_export_keeps_the_existing_file(tmp_path, capsys):
    out = tmp_path / "keep.onnx"
    out.write_bytes(b"previous export")
    assert main(["export", "mobilenetv3_small_100", "--format", "onnx", "-o", str(out), "--resolution", "16"]) == 2
    assert "smaller than the network's total stride 32" in capsys.readouterr().err
    assert out.read_bytes() == b"previous export" and _entries(tmp_path) == ["keep.onnx"]
    assert main(["export", "mobilenetv3_small_100", "--format", "onnx", "-o", str(tmp_path / "x.pte")]) == 2
    assert "should end in .onnx" in capsys.readouterr().err


class DataDependent(nn.Module):
    """A network no graph exporter can capture: its control flow depends on the input's values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y.relu().mean((2, 3))
        return y.mean((2, 3))


@needs_onnx
@pytest.mark.parametrize("fmt", ["onnx", "executorch"])
def test_a_model_the_runtime_cannot_take_is_a_clear_error(fmt, tmp_path):
    if not runtimes.available(fmt):
        pytest.skip(f"{fmt} is not installed: pip install 'mnv3[{runtimes.EXTRAS[runtimes.Format(fmt)].name}]'")
    out = tmp_path / f"d{runtimes.FILE_SUFFIX[runtimes.Format(fmt)]}"
    with pytest.raises(ValueError, match="cannot capture this model"):
        build_artifact(DataDependent().eval(), fmt, out, torch.randn(1, 3, 16, 16), mnv3_flow=False)
    assert not out.exists()
