"""`mnv3 train --task detection`: SSDLite (paper §6.3) trained by the same engine on generated Fashion scenes,
its loss going down, COCO metrics written, weights that rebuild the detector through the one resolver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mnv3
from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.train.metrics import read_metrics
from mnv3.train.run_state import RunPhase, read_status

pytest.importorskip("pycocotools")
ARGS = ["--task", "detect", "--model", "ssdlite_mobilenetv3_small_100_reduced", "--resolution", "128", "--batch-size", "4",
        "--max-steps", "24", "--epochs", "6", "--deterministic", "--no-progress", "--set", "train_subset=16", "--set", "val_subset=6",
        "--set", "log_interval=1", "--set", "tensorboard=false", "--set", "threads=1", "--set", "lr=0.02"]  # fmt: skip


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_detection_run_learns_writes_coco_metrics_and_reloads(tmp_path: Path, monkeypatch, capsys):
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    monkeypatch.setenv("MNV3_CACHE", str(tmp_path / "cache"))  # Fashion scenes are generated here on first use
    assert main(["train", "--out-dir", str(tmp_path), "--name", "det", *ARGS]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "det"
    assert "test: mAP" in out, out
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 24 and sum(losses[-4:]) < sum(losses[:4])  # the same images, 6 epochs: it fits them
    final = json.loads((run / "final_metrics.json").read_text())
    assert set(final["coco"]) >= {"mAP", "mAP50", "AR100"} and set(final["per_class_ap"]) == set(fm.CLASSES)
    assert final["count"] == 6
    status = read_status(run)
    assert status is not None and status.phase is RunPhase.FINISHED and status.best["metric"] == "mAP"
    assert {"model.safetensors", "ap_per_class.png", "curves.png"} <= set(status.artifacts)

    net = mnv3.create_model("ssdlite_mobilenetv3_small_100_reduced", weights=str(run / "model.safetensors")).eval()
    assert net.spec.num_classes == 11 and net.spec.detection is not None  # 10 categories + background
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        raw = net(x)
        (det,) = net.postprocess(raw, [(128, 128)])
    assert raw["cls_logits"].shape[-1] == 11 and raw["anchors"].shape[0] == raw["bbox_regression"].shape[1]
    assert set(det) == {"boxes", "scores", "labels"} and (det["labels"] >= 1).all()
