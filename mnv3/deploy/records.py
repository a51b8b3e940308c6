"""Typed latency records (JSON lines): the unit of every speed claim and of the latency lookup tables.

One :class:`LatencyRecord` is one (model, runtime, precision, threads, batch, resolution)
measurement on one :class:`Machine`; :class:`LayerRecord` is one layer of a per-layer breakdown.
``key()`` is what a lookup table indexes by; ``from_dict`` reads what ``to_dict`` wrote (and
refuses another schema), so tables can be rebuilt from stored files.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SCHEMA = "mnv3.latency/1"
LAYER_SCHEMA = "mnv3.layer-latency/1"
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "neon",
    "asimd",
    "sve",
)


def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    name, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    return name, tuple(f for f in ISA_FLAGS if f in flags)


@dataclass(frozen=True)
class Machine:
    """Where a measurement ran: device kind, CPU model and ISA extensions, visible cores, OS."""

    device: str
    cpu: str
    cores: int
    isa: tuple[str, ...]
    arch: str
    os: str
    python: str

    @classmethod
    def detect(cls) -> Machine:
        cpu, isa = _cpuinfo()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls(
            "cpu", cpu, cores, isa, platform.machine(), f"{platform.system()} {platform.release()}", platform.python_version()
        )

    def line(self) -> str:
        """The one-line machine description docs put next to every figure."""
        return f"{self.cpu}, {self.cores} cores visible, {self.arch}, ISA: {' '.join(self.isa) or 'n/a'}; {self.os}; Python {self.python}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Machine:
        return cls(**{**d, "isa": tuple(d.get("isa", ()))})


def load_average() -> tuple[float, float, float] | None:
    """1-, 5- and 15-minute load averages (None where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class LatencyRecord:
    """One latency measurement. Times in milliseconds per call of ``batch`` images.

    ``source`` says whose network it is (``mnv3`` or a peer such as ``torchvision``); ``model``
    its name there. ``peak_rss_mb`` is the process's resident-set high-water mark during the
    timed calls, ``rss_increase_mb`` how far it rose above the resident set just before them.
    """

    model: str
    source: str
    runtime: str
    runtime_version: str
    precision: str
    threads: int
    batch: int
    resolution: int
    in_chans: int
    warmup: int
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    images_per_s: float
    machine: Machine
    build_s: float | None = None
    artifact_bytes: int | None = None
    peak_rss_mb: float | None = None
    rss_increase_mb: float | None = None
    repeat: int = 0
    load_avg: tuple[float, float, float] | None = None
    torch_version: str = ""
    mnv3_version: str = ""
    timestamp: str = field(default_factory=_now)
    notes: str = ""
    schema: str = SCHEMA
    width: int | None = None  # the input's width where it is not square (``resolution`` is then its height)

    def key(self) -> tuple[str, str, str, str, int, int, int]:
        """What a latency lookup table indexes by (the machine is the table itself)."""
        return (self.source, self.model, self.runtime, self.precision, self.threads, self.batch, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyRecord:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} record (schema {d.get('schema')!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} in a {SCHEMA} record")
        return cls(
            **{**d, "machine": Machine.from_dict(d["machine"]), "load_avg": tuple(d["load_avg"]) if d.get("load_avg") else None}
        )


@dataclass(frozen=True)
class LayerRecord:
    """One layer's share of a model's latency in one runtime (per-layer breakdown)."""

    model: str
    runtime: str
    runtime_version: str
    precision: str
    threads: int
    resolution: int
    layer: str
    ops: int
    median_us: float
    share: float
    machine: Machine
    timestamp: str = field(default_factory=_now)
    schema: str = LAYER_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_jsonl(path: str | Path, records: list[LatencyRecord] | list[LayerRecord], *, append: bool = False) -> Path:
    """Write records as JSON lines, atomically (appending keeps the existing lines)."""
    from mnv3.utils.atomic import atomic_write_bytes

    path = Path(path)
    old = path.read_bytes() if append and path.exists() else b""
    text = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
    atomic_write_bytes(path, old + text.encode())
    return path


def read_jsonl(path: str | Path) -> list[LatencyRecord]:
    """The latency records of a JSON-lines file (layer records and other schemas are skipped)."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i} is not JSON: {e}") from None
        if d.get("schema") == SCHEMA:
            out.append(LatencyRecord.from_dict(d))
    return out
