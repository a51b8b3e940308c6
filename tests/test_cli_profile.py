"""`mnv3 profile` and `mnv3 models` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mnv3.cli.main import main


def test_profile_json_matches_paper(capsys) -> None:
    assert main(["profile", "mobilenetv3_large_100", "--num-classes", "1001", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["params"] / 1e6 - 5.4) <= 0.1 and abs(out["madds"] / 1e6 - 217) <= 1
    assert "layers" not in out


def test_profile_per_layer_table_width_and_resolution(capsys) -> None:
    assert main(["profile", "mobilenetv3_small_100", "--per-layer", "--width", "0.75", "--resolution", "160", "--preset", "torchvision"]) == 0
    text = capsys.readouterr().out
    assert "blocks.0.dw.conv" in text and "classifier" in text and "160x160" in text


def test_profile_per_layer_json_sums_to_total(capsys) -> None:
    assert main(["profile", "mobilenetv3_small_050", "--per-layer", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sum(layer["madds"] for layer in out["layers"]) == out["madds"]


def test_profile_spec_file(tmp_path, capsys) -> None:
    assert main(["models", "mobilenetv3_small_100", "--yaml"]) == 0
    path = tmp_path / "small.yaml"
    path.write_text(capsys.readouterr().out)
    assert main(["profile", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] > 1_000_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "mobilenetv3_lage_100"], "Did you mean"),
        (["profile", "mobilenetv3_large_100", "--resolution", "16"], "smaller than the network's total stride"),
        (["profile", "missing.json"], "does not exist"),
    ],
)
def test_profile_bad_input(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_console_script_runs() -> None:
    res = subprocess.run([sys.executable, "-m", "mnv3.cli.main", "models"], capture_output=True, text=True, check=True)
    assert "mobilenetv3_large_100" in res.stdout
