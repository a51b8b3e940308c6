"""Exact resume: a run stopped by SIGINT mid-epoch and resumed gives the same per-step losses and the
same final weights as the same run uninterrupted (CPU, deterministic mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.train.checkpoint import load_checkpoint
from mnv3.train.metrics import read_metrics

# 2 epochs of 32 steps; every source of randomness is on: augmentation (crop, flip, erasing),
# mixup, dropout, EMA, warm-up then step decay, TF-style RMSProp.
ARGS = ["--epochs", "2", "--batch-size", "32", "--resolution", "32", "--deterministic", "--seed", "7", "--no-progress",
        "--set", "train_subset=1024", "--set", "val_subset=500", "--set", "log_interval=1", "--set", "threads=1",
        "--set", "tensorboard=false", "--set", "random_erasing=0.25", "--set", "mixup=0.2", "--set", "ema_decay=0.99",
        "--set", "optimizer=rmsprop_tf", "--set", "lr=0.05", "--set", "lr_base_batch=256", "--set", "schedule=step",
        "--set", "decay_epochs=0.5", "--set", "decay_rate=0.8", "--set", "warmup_epochs=0.25", "--set", "bn_momentum=0.1"]


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


@pytest.mark.slow
def test_sigint_then_resume_repeats_the_uninterrupted_run_exactly(tmp_path: Path):
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    # B: a separate `mnv3 train` process, interrupted with SIGINT once it has taken a few steps
    cmd = [sys.executable, "-m", "mnv3.cli.main", "train", "--out-dir", str(tmp_path), "--name", "b", *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and max(_train_losses(tmp_path / "b"), default=0) >= 5:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    assert "SIGINT received" in err and "--resume" in err
    stopped = int(load_checkpoint(tmp_path / "b")["step"])
    assert 5 <= stopped < 32, "the interruption should fall inside the first epoch"
    assert max(_train_losses(tmp_path / "b")) == stopped  # the checkpoint holds the last step taken

    # A: the same run, uninterrupted
    assert main(["train", "--out-dir", str(tmp_path), "--name", "a", *ARGS]) == 0
    # B continues from its checkpoint
    assert main(["train", "--resume", str(tmp_path / "b")]) == 0

    a, b = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert sorted(a) == sorted(b) == list(range(1, 65))
    assert [a[s] for s in a] == [b[s] for s in a], "per-step losses differ after resuming"
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
