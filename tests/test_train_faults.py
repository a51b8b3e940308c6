"""Faults: SIGKILL while a checkpoint is written, SIGTERM mid-run, a non-finite loss, bad dataset files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.train.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from mnv3.train.metrics import read_metrics

# The writer stands in for a slow disk: its fsync announces itself and stalls, so the SIGKILL
# lands after the new bytes are written to the temporary file and before the rename.
WRITER = textwrap.dedent(
    """
    import os, sys, time, torch
    from mnv3.train.checkpoint import save_checkpoint
    real_fsync = os.fsync
    def slow_fsync(fd):
        print("syncing", flush=True)
        time.sleep(60)
        real_fsync(fd)
    save_checkpoint(sys.argv[1], {"step": 1, "w": torch.arange(1000.0)})
    os.fsync = slow_fsync
    save_checkpoint(sys.argv[1], {"step": 2, "w": torch.zeros(4_000_000)})
    """
)


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_sigkill_while_writing_leaves_the_previous_checkpoint_loadable(tmp_path: Path):
    path = tmp_path / "last.pt"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "syncing"
        temps = list(tmp_path.glob(".last.pt.tmp-*"))
        assert len(temps) == 1 and temps[0].stat().st_size > 16_000_000  # the new checkpoint is on its way
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(1000.0))
    assert remove_stale_temporaries(tmp_path) == temps and not temps[0].exists()
    save_checkpoint(path, {"step": 3})  # and the next save works
    assert load_checkpoint(path)["step"] == 3


def test_a_torn_checkpoint_is_a_clear_error(tmp_path: Path):
    path = save_checkpoint(tmp_path / "c.pt", {"step": 1, "w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def _need_fashion_mnist():
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")


TINY = ["--epochs", "1", "--batch-size", "32", "--resolution", "32", "--no-progress", "--set", "train_subset=1024",
        "--set", "val_subset=200", "--set", "log_interval=1", "--set", "threads=1", "--set", "tensorboard=false"]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path):
    _need_fashion_mnist()
    cmd = [sys.executable, "-m", "mnv3.cli.main", "train", "--out-dir", str(tmp_path), "--name", "t", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    metrics = tmp_path / "t" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and any(r.get("step", 0) >= 2 for r in read_metrics(metrics)):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received" in err
    state = load_checkpoint(tmp_path / "t")
    assert state["step"] == max(r["step"] for r in read_metrics(metrics)) and state["step"] < 32


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path: Path, capsys):
    _need_fashion_mnist()
    # plain SGD at lr 1e30 overflows the weights within a few steps; a checkpoint is written every step
    code = main(["train", "--out-dir", str(tmp_path), "--name", "nan", *TINY, "--lr", "1e30", "--set", "optimizer=sgd",
                 "--set", "momentum=0", "--set", "checkpoint_interval=1", "--set", "warmup_epochs=0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "not finite" in err and "last good checkpoint" in err
    run = tmp_path / "nan"
    records = read_metrics(run / "metrics.jsonl")
    logged = [r["step"] for r in records if r["kind"] == "train"]
    bad_step = int(err.split("at step ")[1].split()[0])
    state = load_checkpoint(run / "last.pt")  # loadable, and from the step before the bad one
    assert state["step"] == bad_step - 1 == max(logged)
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert not (run / "model.safetensors").exists()


def _image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        for c, shade in (("dark", 40), ("light", 210)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(shade, 20, (40, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    (root / "train" / "dark" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "train" / "light" / "empty.png").write_bytes(b"")
    (root / "train" / "light" / "readme.txt").write_text("hello")


def test_folder_training_skips_and_counts_bad_files_or_fails_with_strict(tmp_path: Path, capsys):
    _image_folder(tmp_path / "data")
    args = ["train", "--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "runs"), "--max-steps", "2", "--epochs", "1",
            "--batch-size", "4", "--resolution", "32", "--no-progress", "--set", "threads=1", "--set", "tensorboard=false"]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert main([*args, "--name", "ok"]) == 0
    assert any("skipped 3 unreadable file(s)" in str(x.message) for x in w)
    assert (tmp_path / "runs" / "ok" / "model.safetensors").is_file()
    assert main([*args, "--name", "strict", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "mnv3 train: error: 3 unreadable file(s)" in err and "broken.jpg" in err and "readme.txt" in err
