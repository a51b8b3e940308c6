"""One resolver: the same weights source gives the same network through every entry point.

Sources: a torchvision checkpoint (library and model told by its keys and shapes), the mnv3 file
``mnv3 convert`` writes from it, a training run folder holding that file, and a training
checkpoint (``last.pt``) carrying the same tensors. Entry points: ``mnv3.create_model(weights=)``,
``mnv3.weights.load_model``, ``mnv3 profile``, ``mnv3 predict``, ``mnv3 eval``, ``mnv3 export``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
import torchvision
from PIL import Image

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import runtimes
from mnv3.models.testing import randomize_
from mnv3.spec.serialize import spec_to_dict
from mnv3.train.checkpoint import save_checkpoint
from mnv3.train.config import TrainConfig
from mnv3.weights import convert_checkpoint, load_model, load_weights_into, resolve


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    src = randomize_(torchvision.models.mobilenet_v3_small(num_classes=4), seed=3)
    torch.save(src.state_dict(), root / "tv.pth")
    assert main(["convert", "--from", "torchvision", str(root / "tv.pth"), "-o", str(root / "small.safetensors")]) == 0
    run = root / "run"
    run.mkdir()
    shutil.copy(root / "small.safetensors", run / "model.safetensors")
    model = load_model(root / "small.safetensors")
    pp = dataclasses.asdict(model.weights_meta.preprocessing)
    state = {"config": TrainConfig(model="mobilenetv3_small_100").to_dict(), "model": model.state_dict(), "step": 1,
             "spec": spec_to_dict(model.spec), "classes": ["a", "b", "c", "d"], "preprocessing": pp, "ema": None}
    save_checkpoint(root / "last.pt", state)
    Image.fromarray((torch.rand(80, 90, 3) * 255).byte().numpy()).save(root / "img.png")
    for c in "abcd":  # a tiny labelled folder for eval
        (root / "data" / c).mkdir(parents=True)
        Image.fromarray((torch.rand(40, 40, 3) * 255).byte().numpy()).save(root / "data" / c / "x.png")
    return src.eval(), root, [root / "tv.pth", root / "small.safetensors", run, root / "last.pt"]


def test_every_source_resolves_to_the_same_network(sources) -> None:
    src, _, paths = sources
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = src(x)
    specs = []
    for p in paths:
        res = resolve(p)
        specs.append(res.spec)
        for net in (load_model(p), mnv3.create_model("mobilenetv3_small_100", weights=p), mnv3.create_model("mobilenetv3_small_100", num_classes=4, weights=p)):
            with torch.no_grad():
                assert (net.eval()(x) - ref).abs().max() <= 1e-4, p
            assert net.spec.conventions == mnv3.spec.get_preset("torchvision"), p  # the weights chose the preset
    assert all(s.conventions == specs[0].conventions and s.blocks == specs[0].blocks for s in specs)


def test_every_command_accepts_every_source(sources, capsys, tmp_path) -> None:
    _, root, paths = sources
    params, tops = set(), set()
    for p in paths:
        assert main(["profile", "--weights", str(p), "--json"]) == 0
        params.add(json.loads(capsys.readouterr().out)["params"])
        assert main(["predict", str(root / "img.png"), "--weights", str(p), "--json", "--topk", "2"]) == 0
        tops.add(tuple((t["index"], round(t["prob"], 5)) for t in json.loads(capsys.readouterr().out)["top"]))  # labels: per source
        assert main(["eval", str(p), "--data", str(root / "data"), "--split", "none", "--out-dir", str(tmp_path / p.name)]) == 0
        assert "(4 images)" in capsys.readouterr().out
        if runtimes.available("onnx"):
            out = tmp_path / f"{p.name}.onnx"
            assert main(["export", "--weights", str(p), "--format", "onnx", "-o", str(out), "--resolution", "32"]) == 0
            assert out.is_file()
            capsys.readouterr()
    assert len(params) == 1 and len(tops) == 1  # the same network and numbers from every source


def test_contradicting_options_are_refused_everywhere(sources, capsys) -> None:
    _, root, paths = sources
    for p in paths:
        assert main(["profile", "mobilenetv3_large_100", "--weights", str(p)]) == 2
        err = capsys.readouterr().err
        assert "not mobilenetv3_large_100" in err or "does not fit mobilenetv3_large_100" in err
        assert main(["profile", "--weights", str(p), "--preset", "paper"]) == 2
        err = capsys.readouterr().err
        assert "not preset 'paper'" in err or "not 'paper'" in err
        assert main(["profile", "--weights", str(p), "--width", "0.75"]) == 2
        assert "mobilenetv3_small_100+width=0.75" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["tv.pth", "small.safetensors", "last.pt"])
def test_a_file_is_read_once_per_resolve(sources, monkeypatch, name) -> None:
    """Library detection, shape inference and conversion share one read (torch.load / safetensors' load_file)."""
    import safetensors.torch

    _, root, _ = sources
    model = mnv3.create_model("mobilenetv3_small_100", preset="torchvision", num_classes=4)
    reads: list[str] = []

    def counted(real):
        def read(f, *args, **kwargs):
            reads.append(str(f))
            return real(f, *args, **kwargs)

        return read

    monkeypatch.setattr(torch, "load", counted(torch.load))
    monkeypatch.setattr(safetensors.torch, "load_file", counted(safetensors.torch.load_file))
    calls = [lambda: resolve(root / name), lambda: load_model(root / name), lambda: load_weights_into(model, root / name)]
    if name == "tv.pth":
        calls.append(lambda: resolve(root / name, model="mobilenet_v3_small"))
        calls.append(lambda: convert_checkpoint(root / name, "torchvision"))
    for call in calls:
        reads.clear()
        call()
        assert reads == [str(root / name)]
