"""A short real run: `mnv3 train` on a Fashion-MNIST subset learns, writes its run folder, and
`mnv3 eval` on the saved weights reproduces the run's own evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.deploy import available
from mnv3.train.metrics import read_metrics
from mnv3.weights import model_from_file

# 100 steps of 32 images at 32 px (about 15 s on one core); chance is 10 %.
SHORT = ["--max-steps", "100", "--epochs", "1", "--batch-size", "32", "--resolution", "32", "--no-progress",
         "--set", "train_subset=3200", "--set", "val_subset=1000", "--set", "bn_momentum=0.1", "--set", "log_interval=5",
         "--set", "threads=1", "--set", "tensorboard=false", "--set", "warmup_epochs=0.1", "--set", "lr=0.4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    out = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--out-dir", str(out), "--name", "short", *SHORT]) == 0
    finally:
        torch.set_num_threads(threads)
    return out / "short"


def test_short_run_lowers_the_loss_and_beats_chance(run: Path):
    records = read_metrics(run / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 21 and records[-1]["step"] == 100
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]  # from ln(10) = 2.30 to below 1.85
    top1 = [r["top1"] for r in records if r["kind"] == "eval"][-1]
    assert top1 > 0.4, f"top-1 {top1:.3f} is not well above chance (0.1)"


def test_run_folder_holds_config_curves_checkpoints_and_weights(run: Path):
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "confusion.png", "last.pt", "best.pt", "final_metrics.json", "model.safetensors"):
        assert (run / name).is_file(), name
    model, meta = model_from_file(run / "model.safetensors")
    assert meta.categories == list(fm.CLASSES) and meta.preprocessing.grayscale
    assert (meta.preprocessing.resize, meta.preprocessing.crop, model.spec.in_chans) == (32, 32, 1)
    assert meta.recipe["max_steps"] == 100 and meta.metrics["fashion-mnist test top-1"] > 0.4


def test_eval_command_reproduces_the_final_metrics(run: Path, tmp_path: Path, capsys):
    final = json.loads((run / "final_metrics.json").read_text())
    threads = torch.get_num_threads()
    try:
        assert main(["eval", str(run / "model.safetensors"), "--subset", "3000", "--threads", "1", "--out-dir", str(tmp_path)]) == 0
        # and the checkpoint path gives exactly the weights file's numbers
        assert main(["eval", str(run / "last.pt"), "--subset", "3000", "--threads", "1", "--out-dir", str(tmp_path / "ckpt")]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "per-class accuracy" in out and "Ankle boot" in out
    report = json.loads((tmp_path / "eval-test.json").read_text())
    assert (tmp_path / "confusion-test.png").is_file()
    assert report["count"] == 3000 and sum(map(sum, report["confusion"])) == 3000
    # the run evaluated a class-balanced 1,000-image subset; 3,000 other test images must agree closely
    assert abs(report["top1"] - final["top1"]) < 0.06
    again = json.loads((tmp_path / "ckpt" / "eval-test.json").read_text())
    assert again["confusion"] == report["confusion"]


def test_weights_flag_starts_from_saved_weights(run: Path, tmp_path: Path):
    threads = torch.get_num_threads()
    try:
        args = ["train", "--out-dir", str(tmp_path), "--name", "ft", "--weights", str(run / "model.safetensors"), *SHORT,
                "--max-steps", "2", "--set", "val_subset=200"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    first = next(r for r in read_metrics(tmp_path / "ft" / "metrics.jsonl") if r["kind"] == "train")
    trained = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
    # the first step's loss is computed before any update: it is the loaded network's, not a fresh one's (2.30)
    assert first["step"] == 1 and first["loss"] < 2.0 and abs(first["loss"] - sum(trained[-5:]) / 5) < 0.4


@pytest.mark.slow
@pytest.mark.skipif(not available("executorch"), reason="ExecuTorch is not installed: pip install 'mnv3[executorch]'")
def test_qat_run_writes_float_weights_and_its_int8_program(run: Path, tmp_path: Path):
    """`mnv3 train --qat` from trained weights: float weights plus the int8 program it was trained for, run in ExecuTorch."""
    from mnv3.deploy.calibration import labelled_set
    from mnv3.deploy.executorch_backend import ExecuTorchPredictor

    threads = torch.get_num_threads()
    try:
        args = ["train", "--out-dir", str(tmp_path), "--name", "qat", "--weights", str(run / "model.safetensors"), *SHORT,
                "--qat", "--max-steps", "20", "--set", "lr=0.02", "--set", "val_subset=300", "--set", "channels_last=false"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    qat_dir = tmp_path / "qat"
    model, meta = model_from_file(qat_dir / "model.safetensors")
    assert "quantization-aware" in meta.source and (qat_dir / "model-int8.pte").is_file()
    test = labelled_set("fashion-mnist", meta.preprocessing, in_chans=1, limit=300)
    int8 = ExecuTorchPredictor(qat_dir / "model-int8.pte", threads=1).predict_batches(test.images, 1).argmax(1)
    with torch.no_grad():
        fp = model.eval()(test.images).argmax(1).numpy()
    labels = test.labels.numpy()
    print(f"QAT run on 300 test images: float {100 * (fp == labels).mean():.1f} %, int8 {100 * (int8 == labels).mean():.1f} %, "
          f"agreement {100 * (int8 == fp).mean():.1f} %")
    # measured: float 60.7 %, int8 59.7 %, top-1 agreement 80.7 % (a 120-step network has thin margins)
    assert (int8 == labels).mean() > 0.4 and abs((int8 == labels).mean() - (fp == labels).mean()) <= 0.05
    assert (int8 == fp).mean() >= 0.7
