"""`torchrun --nproc_per_node 2` (gloo, CPU) against one process with the same global batch.

Each process takes every other image of the global batch (DistributedSampler), and gradients are
averaged. One process that splits its batch the same way (``grad_accum_steps=2``, micro-batch j =
images j, j+2, ...) computes the same BN batch statistics and the same averaged gradient, so the
stated tolerance for the per-step training loss and the parameters is float rounding: 1e-5
relative. (A single process *without* the split normalises over all 64 images instead of two
groups of 32 and drifts away by a few per cent per step; docs/benchmarks.md shows both.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.train.metrics import read_metrics

ARGS = ["--max-steps", "20", "--epochs", "1", "--batch-size", "64", "--resolution", "32", "--deterministic", "--no-progress",
        "--set", "train_subset=1280", "--set", "val_subset=200", "--set", "log_interval=1", "--set", "threads=1",
        "--set", "bn_momentum=0.1", "--set", "dropout=0.0", "--set", "lr=0.4", "--set", "warmup_epochs=0.1",
        "--set", "random_erasing=0.25", "--set", "ema_decay=0.9"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path: Path):
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mnv3.cli.main", "train", "--out-dir", str(tmp_path / "ddp"), "--name", "run", *ARGS]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es)" in res.stdout + res.stderr

    threads = torch.get_num_threads()
    try:
        assert main(["train", "--out-dir", str(tmp_path / "one"), "--name", "run", *ARGS, "--set", "grad_accum_steps=2"]) == 0
    finally:
        torch.set_num_threads(threads)

    ddp, one = tmp_path / "ddp" / "run", tmp_path / "one" / "run"
    la = {r["step"]: r["loss"] for r in read_metrics(ddp / "metrics.jsonl") if r["kind"] == "train"}
    lb = {r["step"]: r["loss"] for r in read_metrics(one / "metrics.jsonl") if r["kind"] == "train"}
    assert sorted(la) == sorted(lb) == list(range(1, 21))
    for s in la:
        assert la[s] == pytest.approx(lb[s], rel=1e-5), f"step {s}: {la[s]} vs {lb[s]}"
    assert la[20] < la[1] - 0.1  # and it did learn
    wa, wb = load_file(ddp / "model.safetensors"), load_file(one / "model.safetensors")
    for k in wa:
        if "running_" not in k and "num_batches" not in k:  # BN running averages see 1 vs 2 updates per step
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")

    # one set of outputs: rank 1 wrote nothing, no record is doubled
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["run"]
    assert sorted(p.name for p in ddp.iterdir()) == sorted(
        [".lock", "status.json", "config.yaml", "metrics.jsonl", "curves.png", "confusion.png", "last.pt", "best.pt", "final_metrics.json", "model.safetensors", "tensorboard"]
    )
    records = read_metrics(ddp / "metrics.jsonl")
    assert len(records) == len({(r["kind"], r["step"]) for r in records})
    assert len(list((ddp / "tensorboard").iterdir())) == 1
