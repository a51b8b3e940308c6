"""`mnv3 train --task segmentation`: LR-ASPP (paper §6.4) trained by the same engine on Fashion scenes' semantic
masks, its loss going down, mIoU written, weights that rebuild the segmenter through the one resolver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mnv3
from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.data.segmentation import FASHION_SCENES_CLASSES
from mnv3.train.metrics import read_metrics
from mnv3.train.run_state import RunPhase, read_status

ARGS = ["--task", "segment", "--resolution", "96", "--batch-size", "4", "--max-steps", "24", "--epochs", "6", "--deterministic",
        "--no-progress", "--set", "train_subset=16", "--set", "val_subset=4", "--set", "log_interval=1", "--set", "tensorboard=false",
        "--set", "threads=1", "--set", "hflip=0"]  # fmt: skip


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_segmentation_run_learns_writes_miou_and_reloads(tmp_path: Path, monkeypatch, capsys):
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    monkeypatch.setenv("MNV3_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--out-dir", str(tmp_path), "--name", "seg", *ARGS]) == 0
    assert "test: mIoU" in capsys.readouterr().out
    run = tmp_path / "seg"
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 24 and sum(losses[-4:]) < sum(losses[:4])
    final = json.loads((run / "final_metrics.json").read_text())
    assert set(final["per_class_iou"]) == set(FASHION_SCENES_CLASSES) and 0 <= final["mIoU"] <= 1 and final["count"] == 4
    status = read_status(run)
    assert status is not None and status.phase is RunPhase.FINISHED and status.best["metric"] == "mIoU"
    assert {"model.safetensors", "iou_per_class.png"} <= set(status.artifacts)
    net = mnv3.create_model("lraspp_mobilenetv3_small_100", weights=str(run / "model.safetensors"), pool="global").eval()
    assert net.spec.num_classes == 11 and net.spec.segmentation is not None and net.spec.name.endswith("+pool=global")
    with torch.no_grad():
        assert net(torch.randn(1, 3, 96, 96)).shape == (1, 11, 96, 96)

    # mnv3 eval finds the run's own scenes from its recipe and reproduces the final metrics
    capsys.readouterr()
    assert main(["eval", str(run / "model.safetensors"), "--out-dir", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert f"mIoU {100 * final['mIoU']:.2f} %" in out and "per-class IoU" in out, out
    report = json.loads((tmp_path / "ev" / "eval-test.json").read_text())
    assert report["mIoU"] == pytest.approx(final["mIoU"], abs=1e-9) and (tmp_path / "ev" / "iou_per_class-test.png").is_file()


def test_a_classifier_cannot_be_trained_for_segmentation(capsys):
    assert main(["train", "--task", "segment", "--model", "mobilenetv3_small_100", "--print-config"]) == 0  # config alone is fine
    capsys.readouterr()
    from mnv3.tasks import SegmentationTask
    from mnv3.train.config import load_recipe

    cfg = load_recipe("fashion-scenes-lraspp", {"model": "mobilenetv3_small_100"})
    with pytest.raises(ValueError, match="is not a segmenter"):
        SegmentationTask.from_config(cfg, ["bg", "a"])
