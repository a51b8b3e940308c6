"""The run's metric log: JSON lines (whole lines only, rewritten atomically on resume), plus TensorBoard."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Appends one JSON object per record to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    Only the main process should hold an enabled logger.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                warnings.warn("tensorboard is not installed (pip install 'mnv3[train]'); logging to metrics.jsonl only", stacklevel=2)

    def log(self, kind: str, step: int, replace: bool = False, **values: Any) -> None:
        """Append one record (``kind`` is "train" or "eval") and mirror its numbers to TensorBoard.

        ``replace``: make it the only ``kind`` record at ``step`` and the last one (:func:`replace_records`).
        """
        if not self.enabled:
            return
        if replace:
            replace_records(self.path, kind, step, values)
        else:
            with open(self.path, "a") as f:
                f.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch",):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a torn last line from a killed writer is ignored)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | Path, after_step: int) -> None:
    """Drop records past ``after_step`` (a resumed run repeats them); the file is rewritten atomically."""
    from mnv3.utils.atomic import atomic_write_bytes

    p = Path(path)
    if not p.is_file():
        return
    keep = [r for r in read_metrics(p) if r.get("step", 0) <= after_step]
    atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in keep).encode())


def replace_records(path: str | Path, kind: str, step: int, record: dict[str, Any]) -> None:
    """Make ``record`` the one ``kind`` record at ``step`` and drop every later record (atomic rewrite).

    The final evaluation logs through this, so a run killed and resumed around it logs it exactly once.
    """
    from mnv3.utils.atomic import atomic_write_bytes

    p = Path(path)
    keep = [r for r in read_metrics(p) if r.get("step", 0) < step or (r.get("step") == step and r.get("kind") != kind)]
    keep.append({"kind": kind, "step": step, **record})
    atomic_write_bytes(p, "".join(json.dumps(r) + "\n" for r in keep).encode())
