"""Kill a run anywhere: SIGKILL inside a training step, during a checkpoint write, during the final evaluation
and while artifacts are written; each resume continues from the phase the run was in, and the final artifacts
equal an uninterrupted run's (weights bit-identical on CPU, deterministic mode). No half-written file is ever
visible; a second process on the same run folder is refused; a failed write keeps the previous checkpoint."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.train.checkpoint import load_checkpoint
from mnv3.train.metrics import read_metrics
from mnv3.train.run_state import RunLock, RunPhase, list_runs, read_status

# 16 steps per epoch, 24 steps: a validation and checkpoints at the epoch end (16), interval checkpoints every 5
ARGS = ["--max-steps", "24", "--epochs", "2", "--batch-size", "16", "--resolution", "32", "--deterministic", "--seed", "3",
        "--no-progress", "--set", "train_subset=256", "--set", "val_subset=96", "--set", "checkpoint_interval=5",
        "--set", "threads=1", "--set", "tensorboard=false", "--set", "log_interval=1", "--set", "ema_decay=0.9"]

# The run as a subprocess that SIGKILLs itself at a chosen point (MNV3_TEST_KILL): "step:N" inside step N + 1
# after its backward pass; "write:NAME:K" at the K-th atomic write of NAME, once its temporary file is whole and
# before the rename; "eval:K" at the K-th batch of the final evaluation.
RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    from mnv3.train import engine
    from mnv3.tasks import classification
    kind, *arg = os.environ["MNV3_TEST_KILL"].split(":")
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if kind == "step":
        real_step = engine.Trainer.optimizer_step
        def optimizer_step(self):
            if self.step == int(arg[0]):
                die()
            real_step(self)
        engine.Trainer.optimizer_step = optimizer_step
    elif kind == "write":
        real_replace, seen = os.replace, [0]
        def replace(src, dst, *a, **k):
            if os.path.basename(dst) == arg[0]:
                seen[0] += 1
                if seen[0] == int(arg[1]):
                    die()
            return real_replace(src, dst, *a, **k)
        os.replace = replace
    elif kind == "eval":
        real_final, real_update, final = engine.Trainer.final_evaluation, classification.ClassificationMeter.update, [0]
        def final_evaluation(self):
            final[0] = 1
            return real_final(self)
        def update(self, outputs, targets):
            if final[0]:
                final[0] += 1
                if final[0] > int(arg[0]):
                    die()
            real_update(self, outputs, targets)
        engine.Trainer.final_evaluation = final_evaluation
        classification.ClassificationMeter.update = update
    from mnv3.cli.main import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def _data():
    try:
        fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")


def _run(argv: list[str], kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if kill:
        env["MNV3_TEST_KILL"] = kill
        cmd = [sys.executable, "-c", RUNNER, *argv]
    else:
        cmd = [sys.executable, "-m", "mnv3.cli.main", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _assert_all_files_whole(run: Path) -> None:
    """Every visible file of the run folder reads completely (temporaries are hidden dot-files)."""
    for p in sorted(run.iterdir()):
        if p.name.startswith("."):
            assert p.name == ".lock" or ".tmp-" in p.name, p
            continue
        if p.suffix == ".pt":
            load_checkpoint(p)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.name == "metrics.jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.verify()
        elif p.suffix == ".safetensors":
            load_file(p)
        elif p.suffix == ".yaml":
            assert p.read_text().strip()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _evals(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"}


@pytest.mark.slow
def test_sigkill_in_every_phase_then_resume_gives_the_uninterrupted_artifacts(tmp_path: Path, _data):
    ref = _run(["train", "--out-dir", str(tmp_path), "--name", "ref", *ARGS])
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    resume = ["train", "--resume", str(run)]
    # (how the process is killed, the phase the run is left in, the step of its last checkpoint)
    kills = [
        (["train", "--out-dir", str(tmp_path), "--name", "killed", *ARGS], "step:2", RunPhase.TRAINING, None),  # no checkpoint yet
        (resume, "step:7", RunPhase.TRAINING, 5),  # resumed from step 0 in its own folder
        (resume, "write:last.pt:2", RunPhase.TRAINING, 10),  # the 2nd write after resuming at 5 is step 15's
        (resume, "eval:2", RunPhase.FINAL_EVAL, 24),  # the case: killed after the last checkpoint
        (resume, "write:model.safetensors:1", RunPhase.ARTIFACTS, 24),
    ]
    for argv, kill, phase, saved_step in kills:
        proc = _run(argv, kill)
        assert proc.returncode == -signal.SIGKILL, (kill, proc.stderr[-2000:])
        _assert_all_files_whole(run)
        status = read_status(run)
        assert status is not None and status.phase is phase and status.outcome is None, (kill, status)
        if saved_step is None:
            assert not (run / "last.pt").exists() and (run / "config.yaml").is_file()
        else:
            assert load_checkpoint(run / "last.pt")["step"] == saved_step, kill
        assert not (run / "model.safetensors").exists(), kill  # no artifact before the run has earned it
        (summary,) = [r for r in list_runs(tmp_path) if r.path.name == "killed"]
        assert summary.state.startswith(f"stopped in {phase.value}"), summary.state
    done = _run(resume)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_all_files_whole(run)
    status = read_status(run)
    assert status is not None and status.phase is RunPhase.FINISHED and status.outcome == "completed"
    assert set(status.artifacts) == {"final_metrics.json", "confusion.png", "curves.png", "model.safetensors"}

    a, b = _weights(tmp_path / "ref"), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fa, fb = (json.loads((p / "final_metrics.json").read_text()) for p in (tmp_path / "ref", run))
    assert fa == fb
    assert _evals(tmp_path / "ref") == _evals(run)  # the final evaluation is logged once, like the epoch-16 one
    assert [e["step"] for e in _evals(run)] == [16, 24]
    assert _losses(tmp_path / "ref") == _losses(run)

    # a finished run resumed is a no-op that says so and leaves its files alone
    mtimes = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    again = _run(resume)
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout + again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == mtimes


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path: Path, _data, capsys):
    run = tmp_path / "a"
    run.mkdir()
    holder = RunLock(run).acquire()  # another open file description: flock makes it conflict like a process
    try:
        rc = main(["train", "--out-dir", str(tmp_path), "--name", "a", *ARGS])
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert rc == 2 and "is in use by mnv3 pid" in err and "one process per run folder" in err, err
    assert [p.name for p in run.iterdir()] == [".lock"]  # nothing written beside the lock
    assert main(["train", "--out-dir", str(tmp_path), "--name", "a", *ARGS[2:], "--max-steps", "2"]) == 0


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_stops_with_one_line(tmp_path: Path, _data, capsys, monkeypatch):
    real_replace, writes = os.replace, []

    def replace(src, dst, *a, **k):
        if os.path.basename(dst) == "last.pt":
            writes.append(dst)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    rc = main(["train", "--out-dir", str(tmp_path), "--name", "full", *ARGS])
    monkeypatch.setattr(os, "replace", real_replace)
    err = capsys.readouterr().err.strip().splitlines()
    run = tmp_path / "full"
    assert rc == 1 and len(err) == 1, err
    assert "could not write" in err[0] and "No space left on device" in err[0] and "previous checkpoint (step 5) is intact" in err[0]
    assert f"mnv3 train --resume {run}" in err[0]
    assert load_checkpoint(run / "last.pt")["step"] == 5
    assert not [p for p in run.iterdir() if ".tmp-" in p.name]  # the failed temporary is gone
    status = read_status(run)
    assert status is not None and status.outcome == "write_failed" and status.phase is RunPhase.TRAINING
    assert main(["train", "--resume", str(run)]) == 0  # and the run goes on from step 5
    assert read_status(run).phase is RunPhase.FINISHED  # type: ignore[union-attr]


def test_a_failed_artifact_write_is_an_error_and_resume_writes_them(tmp_path: Path, _data, capsys, monkeypatch):
    from mnv3.weights import io as weights_io

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real = weights_io.save_weights
    monkeypatch.setattr(weights_io, "save_weights", full)
    rc = main(["train", "--out-dir", str(tmp_path), "--name", "art", *ARGS])
    monkeypatch.setattr(weights_io, "save_weights", real)
    err = capsys.readouterr().err
    run = tmp_path / "art"
    assert rc == 1 and "could not write the run's artifacts" in err and "No space left" in err, err
    assert not (run / "model.safetensors").exists() and read_status(run).phase is RunPhase.ARTIFACTS  # type: ignore[union-attr]
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.safetensors").is_file() and read_status(run).phase is RunPhase.FINISHED  # type: ignore[union-attr]


def test_mnv3_runs_lists_state_step_best_and_artifacts(tmp_path: Path, _data, capsys):
    assert main(["train", "--out-dir", str(tmp_path), "--name", "r", *ARGS[2:], "--max-steps", "3"]) == 0
    capsys.readouterr()
    assert main(["runs", str(tmp_path), "--json"]) == 0
    (rec,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rec["state"] == "finished" and rec["step"] == 3 and rec["phase"] == "finished"
    assert rec["best"]["metric"] == "top1" and "model.safetensors" in rec["artifacts"]
    assert main(["runs", str(tmp_path / "nope")]) == 2
