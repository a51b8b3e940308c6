"""A latency lookup table in one SQLite file, bound to its device and runtime (paper §4.2: NetAdapt uses measured latency).

The ``meta`` table records what the figures are valid for (:class:`Target`: runtime and version,
threads, precision, batch, CPU model, visible cores, architecture) and the full machine line; the
``entries`` table one row per :class:`~mnv3.search.lut.keys.LayerKey` with the median and spread of
its interleaved repeats. Every write is one transaction (synchronous=FULL), so a build killed at
any point keeps each entry it finished and nothing half-written; resuming measures only the missing
keys. Opening a table for another target is a :class:`LutMismatchError` naming both.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mnv3.deploy.records import Machine
from mnv3.deploy.runtimes import Runtime, runtime_version
from mnv3.search.lut.keys import KEY_COLUMNS, LayerKey

SCHEMA = "mnv3.lut/1"
TIMING_COLUMNS: tuple[str, ...] = ("median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "runs", "repeats")


@dataclass(frozen=True)
class Timing:
    """Median and spread of a layer's (or network's) batch-1 latency over all timed calls of interleaved repeats."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    runs: int  # timed calls in all
    repeats: int  # interleaved repeats they came from


@dataclass(frozen=True)
class Entry:
    """One stored layer: its key, timing, when it was measured and the 1-minute load average then."""

    key: LayerKey
    timing: Timing
    measured_at: str
    load_avg: float | None


@dataclass(frozen=True)
class Target:
    """What a table's figures are valid for: runtime (+ version), threads, precision, batch and the CPU."""

    runtime: str
    runtime_version: str
    threads: int
    cpu: str
    cores: int
    arch: str
    precision: str = "fp32"
    batch: int = 1

    @classmethod
    def here(cls, runtime: Runtime | str, threads: int) -> Target:
        """The target of measuring ``runtime`` with ``threads`` threads on this machine now."""
        runtime = Runtime(runtime)
        m = Machine.detect()
        return cls(runtime.value, runtime_version(runtime), threads, m.cpu, m.cores, m.arch)

    def describe(self) -> str:
        """One line, e.g. ``onnxruntime 1.32.0, 1 thread(s), fp32 batch 1 on AMD EPYC ... (2 cores, x86_64)``."""
        return (
            f"{self.runtime} {self.runtime_version}, {self.threads} thread(s), {self.precision} batch {self.batch} "
            f"on {self.cpu} ({self.cores} cores, {self.arch})"
        )


class LutMismatchError(ValueError):
    """A table was opened for another runtime, version, thread count or device than it was built for."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


_KEY_SQL = ", ".join(KEY_COLUMNS)
_CREATE = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    kind TEXT NOT NULL, in_h INTEGER NOT NULL, in_w INTEGER NOT NULL, in_ch INTEGER NOT NULL, out INTEGER NOT NULL,
    exp INTEGER NOT NULL, kernel INTEGER NOT NULL, stride INTEGER NOT NULL, dilation INTEGER NOT NULL,
    se INTEGER NOT NULL, squeeze INTEGER NOT NULL, act TEXT, padding TEXT NOT NULL,
    median_ms REAL NOT NULL, p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, min_ms REAL NOT NULL, max_ms REAL NOT NULL,
    runs INTEGER NOT NULL, repeats INTEGER NOT NULL, measured_at TEXT NOT NULL, load_avg REAL,
    UNIQUE ({_KEY_SQL})
);
"""
# act is NULL for linear layers; SQLite's UNIQUE treats NULLs as distinct, so lookups use IS and writes replace by key
_WHERE = " AND ".join(f"{c} IS ?" for c in KEY_COLUMNS)


class LatencyTable:
    """An open lookup table; ``target=None`` opens an existing one read-as-is (show, offline predict)."""

    def __init__(self, path: str | Path, target: Target | None = None, *, create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise FileNotFoundError(f"no latency table at {self.path}; build one with `mnv3 lut build -o {self.path}`")
        if create and target is None:
            raise ValueError("a new latency table needs a target (runtime, threads, device)")
        try:
            # several searches may share one table: wait for another process's commit instead of failing
            self._db = sqlite3.connect(self.path, timeout=60.0)
            self._db.execute("PRAGMA synchronous=FULL")
            with self._db:
                self._db.executescript(_CREATE)
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.path} is not a latency table (SQLite: {e})") from None
        if not meta:
            if target is None:
                self._db.close()
                raise ValueError(f"{self.path} holds no latency table (no meta); build one with `mnv3 lut build`")
            with self._db:
                self._db.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [
                        ("schema", SCHEMA),
                        ("target", json.dumps(asdict(target))),
                        ("machine", json.dumps(asdict(Machine.detect()))),
                        ("created_at", _now()),
                    ],
                )
            meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        if meta.get("schema") != SCHEMA:
            self._db.close()
            raise ValueError(f"{self.path} is not a {SCHEMA} latency table (schema {meta.get('schema')!r})")
        self.target = Target(**json.loads(meta["target"]))
        self.machine = Machine.from_dict(json.loads(meta["machine"]))
        self.created_at = meta.get("created_at", "")
        if target is not None and target != self.target:
            self._db.close()
            raise LutMismatchError(f"{self.path} was built for {self.target.describe()}; asked for {target.describe()}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LatencyTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def get(self, key: LayerKey) -> Entry | None:
        """The stored entry of ``key``, or None."""
        row = self._db.execute(
            f"SELECT {_KEY_SQL}, {', '.join(TIMING_COLUMNS)}, measured_at, load_avg FROM entries WHERE {_WHERE}",
            tuple(key.to_row().values()),
        ).fetchone()
        return None if row is None else self._entry(row)

    def missing(self, keys: Iterable[LayerKey]) -> list[LayerKey]:
        """The distinct keys (first-seen order) that have no entry yet."""
        return [k for k in dict.fromkeys(keys) if self.get(k) is None]

    def put_many(self, items: Sequence[tuple[LayerKey, Timing]], load_avg: float | None = None) -> None:
        """Store (or replace) entries, all in one transaction: either every one is written or none."""
        now = _now()
        with self._db:
            for key, t in items:
                row = tuple(key.to_row().values())
                self._db.execute(f"DELETE FROM entries WHERE {_WHERE}", row)
                self._db.execute(
                    f"INSERT INTO entries ({_KEY_SQL}, {', '.join(TIMING_COLUMNS)}, measured_at, load_avg) "
                    f"VALUES ({', '.join('?' * (len(KEY_COLUMNS) + len(TIMING_COLUMNS) + 2))})",
                    (*row, *(getattr(t, c) for c in TIMING_COLUMNS), now, load_avg),
                )

    def entries(self) -> list[Entry]:
        """Every entry, ordered by kind and input size (largest maps first)."""
        rows = self._db.execute(
            f"SELECT {_KEY_SQL}, {', '.join(TIMING_COLUMNS)}, measured_at, load_avg FROM entries ORDER BY kind, in_h DESC, in_ch, exp, out"
        ).fetchall()
        return [self._entry(r) for r in rows]

    @staticmethod
    def _entry(row: tuple) -> Entry:
        n = len(KEY_COLUMNS)
        key = LayerKey.from_row(dict(zip(KEY_COLUMNS, row[:n], strict=True)))
        t = row[n : n + len(TIMING_COLUMNS)]
        timing = Timing(float(t[0]), float(t[1]), float(t[2]), float(t[3]), float(t[4]), int(t[5]), int(t[6]))
        return Entry(key, timing, row[-2], row[-1])
