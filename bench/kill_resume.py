"""Kill a real Fashion-MNIST run with SIGKILL at random moments, resume it each time, and compare its final
weights and metrics with the same run uninterrupted (docs/training.md, "Run phases: kill it anywhere").

    .venv/bin/python bench/kill_resume.py --kills 20 [--out bench-results/kill-resume] [-- TRAIN FLAGS...]

The reference run goes first and sets the time scale: each process of the killed run lives a random time,
uniform in [3 s, a tenth of the reference's wall time] (seeded), so the kills land in every phase (start-up,
steps, checkpoint writes every 20 steps, evaluation, artifacts) and the run still moves on between them.
Both runs use ``--deterministic`` and the same thread count, so CPU results are expected bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def machine_line() -> str:
    """CPU model, AVX flags, cores, torch version: printed with every figure."""
    model, flags = platform.processor() or "?", ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        have = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in have)
    except (OSError, StopIteration):
        pass
    return f"{model} ({flags}), {os.cpu_count()} cores, torch {torch.__version__}"


def train_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mnv3.cli.main", "train", *args]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench-results/kill-resume")
    ap.add_argument("train_flags", nargs="*", help="extra mnv3 train flags (after --)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--deterministic", "--no-progress", "--set", "threads=1", "--set", "checkpoint_interval=20", "--out-dir", str(out), *a.train_flags]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    print(f"machine: {machine_line()}", flush=True)

    t0 = time.perf_counter()
    subprocess.run(train_cmd([*flags, "--name", "reference"]), check=True, env=env, stdout=subprocess.DEVNULL)
    ref_wall = time.perf_counter() - t0
    print(f"reference run: {ref_wall:.0f} s", flush=True)

    rng = random.Random(a.seed)
    killed_dir = out / "killed"
    kills, resumes, t_total = 0, 0, time.perf_counter()
    cmd = train_cmd([*flags, "--name", "killed"])
    while True:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kills < a.kills:
            delay = rng.uniform(3.0, ref_wall / 10)  # short lives, so (nearly) all kills land before the run ends
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                status = json.loads((killed_dir / "status.json").read_text()) if (killed_dir / "status.json").is_file() else {}
                print(f"kill {kills}: after {delay:.1f} s, run in {status.get('phase', 'start-up')} at step {status.get('step', 0)}", flush=True)
                cmd = train_cmd(["--resume", str(killed_dir), "--no-progress"])
                resumes += 1
                continue
        else:
            proc.wait()
        if proc.returncode != 0:
            print(f"run ended with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}", file=sys.stderr)
            return 1
        if (killed_dir / "status.json").is_file() and json.loads((killed_dir / "status.json").read_text())["phase"] == "finished":
            break
    wall = time.perf_counter() - t_total
    ref, got = load_file(out / "reference" / "model.safetensors"), load_file(killed_dir / "model.safetensors")
    same = ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    fr, fk = (json.loads((p / "final_metrics.json").read_text()) for p in (out / "reference", killed_dir))
    print(f"{kills} SIGKILLs, {resumes} resumes, killed run's wall time {wall:.0f} s (reference {ref_wall:.0f} s)")
    print(f"final weights bit-identical: {same}; final metrics equal: {fr == fk} (top-1 {100 * fr['top1']:.2f} % vs {100 * fk['top1']:.2f} %)")
    print(f"machine: {machine_line()}")
    return 0 if same and fr == fk else 1


if __name__ == "__main__":
    sys.exit(main())
