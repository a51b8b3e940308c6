"""A run folder's life: its phase, a user-readable ``status.json``, and a lock held while a process owns it.

Phases go training -> final_eval -> artifacts -> finished. The checkpoint (``last.pt``) records the phase
it was written in; ``status.json`` mirrors the run for people and for ``mnv3 runs``, and is the only place
that says ``finished`` (written after every artifact exists). ``--resume`` continues from the phase a run
was in: a run killed in its final evaluation evaluates and writes its artifacts; a finished one is a no-op.
Every file is written whole or not at all (:func:`mnv3.utils.atomic.atomic_write_bytes`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mnv3.utils.atomic import atomic_write_text

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"


class RunPhase(str, Enum):
    """Where a run is in its life."""

    TRAINING = "training"
    FINAL_EVAL = "final_eval"  # training done, last.pt holds the final weights; evaluating them
    ARTIFACTS = "artifacts"  # writing final_metrics.json, figures, model.safetensors, extra artifacts
    FINISHED = "finished"  # every artifact exists


class RunLockedError(RuntimeError):
    """Another live process owns the run folder."""


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock``: the kernel drops it when its holder dies, so a killed run never
    leaves the folder locked. Where ``fcntl`` is missing (Windows) no lock is taken."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not on POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder}; wait for that run to end or stop it, then resume it "
                "(one process per run folder)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"mnv3 pid {os.getpid()} on {socket.gethostname()}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (False where locks are not supported)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@dataclass
class RunStatusFile:
    """What ``status.json`` holds."""

    phase: RunPhase
    step: int
    total_steps: int
    model: str
    data: str
    outcome: str | None = None  # how the last process ended: completed, interrupted, nonfinite, write_failed
    message: str = ""
    best: dict[str, Any] = field(default_factory=dict)  # {"metric": "top1", "value": 0.91}
    artifacts: list[str] = field(default_factory=list)
    summary: str = ""  # the final evaluation in the task's words ("top-1 91.20 %, top-5 99.80 %")
    updated: float = 0.0

    def to_json(self) -> str:
        """Pretty JSON (the phase by its value)."""
        d = {**self.__dict__, "phase": self.phase.value}
        return json.dumps(d, indent=2) + "\n"


def write_status(run_dir: Path, status: RunStatusFile) -> None:
    """Write ``status.json`` atomically."""
    status.updated = time.time()
    atomic_write_text(Path(run_dir) / STATUS_FILE, status.to_json())


def read_status(run_dir: Path) -> RunStatusFile | None:
    """The run's status, or None when it has none (or it is unreadable: a run older than status files)."""
    p = Path(run_dir) / STATUS_FILE
    try:
        d = json.loads(p.read_text())
        d["phase"] = RunPhase(d["phase"])
        return RunStatusFile(**d)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def missing_artifacts(run_dir: Path, status: RunStatusFile) -> list[str]:
    """The artifacts a status promises that are not in the folder."""
    return [a for a in status.artifacts if not (Path(run_dir) / a).is_file()]


@dataclass(frozen=True)
class RunSummary:
    """One line of ``mnv3 runs``."""

    path: Path
    state: str  # running | finished | interrupted | stopped (killed?) | failed ... | unknown
    status: RunStatusFile | None


def describe_state(run_dir: Path, status: RunStatusFile | None) -> str:
    """A run's state in a word or two, telling a live run from one whose process is gone."""
    if status is None:
        return "unknown (no status.json)"
    if is_locked(run_dir):
        return f"running ({status.phase.value})"
    if status.phase is RunPhase.FINISHED:
        return "finished" if not missing_artifacts(run_dir, status) else "finished, artifacts missing"
    if status.outcome is None:
        return f"stopped in {status.phase.value} (killed?): resume it"
    return f"{status.outcome} in {status.phase.value}: resume it"


def list_runs(parent: Path) -> list[RunSummary]:
    """Every run folder directly under ``parent`` (those with a status file or a checkpoint), newest first."""
    parent = Path(parent)
    if not parent.is_dir():
        raise FileNotFoundError(f"{parent} is not a folder of runs (mnv3 train writes runs under --out-dir, default runs/)")
    runs = [p for p in parent.iterdir() if p.is_dir() and ((p / STATUS_FILE).is_file() or (p / "last.pt").is_file())]
    runs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    out = []
    for r in runs:
        st = read_status(r)
        out.append(RunSummary(r, describe_state(r, st), st))
    return out
