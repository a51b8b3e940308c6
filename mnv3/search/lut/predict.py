"""Build a lookup table for some networks and predict a network's latency from it (paper §4.2, NetAdapt's latency model).

Each layer is timed alone, so each stored figure includes one runtime call's fixed cost. That cost
is measured too, as the latency of a near-empty model on the network's input (``overhead`` entry,
same runtime, same build); a layer's share is its figure minus that overhead, and a network's
prediction is the sum of its layers' shares plus one overhead:
``predicted = sum_i (layer_i - overhead) + overhead``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mnv3.deploy.records import load_average
from mnv3.search.lut.keys import LayerKey, network_layers, overhead_key
from mnv3.search.lut.measure import Measurer, chunks
from mnv3.search.lut.store import LatencyTable, Timing
from mnv3.spec.types import ModelSpec


def table_keys(specs: Sequence[ModelSpec], resolution: int) -> list[LayerKey]:
    """The distinct keys (first-seen order) of ``specs`` at ``resolution``, each network's overhead key first."""
    keys: list[LayerKey] = []
    for s in specs:
        keys.append(overhead_key(s, resolution))
        keys += [layer.key for layer in network_layers(s, resolution)]
    return list(dict.fromkeys(keys))


def fill(
    table: LatencyTable,
    keys: Sequence[LayerKey],
    measurer: Measurer,
    *,
    group: int = 8,
    log: Callable[[str], None] | None = None,
) -> int:
    """Measure the keys ``table`` lacks, ``group`` at a time, committing each group; returns how many were measured."""
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    todo = table.missing(keys)
    done = 0
    for part in chunks(todo, group):
        timings = measurer.measure(part)
        load = load_average()
        table.put_many(list(zip(part, timings, strict=True)), load[0] if load else None)
        done += len(part)
        if log is not None:
            log(f"measured {done}/{len(todo)} layer configurations ({len(table)} in the table)")
    return done


def build_table(
    table: LatencyTable,
    specs: Sequence[ModelSpec],
    resolution: int,
    measurer: Measurer,
    *,
    group: int = 8,
    log: Callable[[str], None] | None = None,
) -> int:
    """Every layer configuration of ``specs`` at ``resolution`` into ``table`` (resumes: only missing ones are measured)."""
    return fill(table, table_keys(specs, resolution), measurer, group=group, log=log)


@dataclass(frozen=True)
class LayerPrediction:
    """One layer of a prediction: its stored timing and its share (median minus the per-call overhead)."""

    name: str
    key: LayerKey
    timing: Timing
    share_ms: float


@dataclass(frozen=True)
class Prediction:
    """A network's predicted latency: per-layer shares, the fixed overhead, their total (and a measurement if asked)."""

    model: str
    resolution: int
    target: str
    layers: tuple[LayerPrediction, ...]
    overhead: Timing
    measured: Timing | None = None

    @property
    def overhead_ms(self) -> float:
        return self.overhead.median_ms

    @property
    def layers_ms(self) -> float:
        """Sum of the layers' shares."""
        return sum(layer.share_ms for layer in self.layers)

    @property
    def total_ms(self) -> float:
        """Predicted whole-network median: layers' shares + one overhead."""
        return self.layers_ms + self.overhead_ms

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured, when measured."""
        return None if self.measured is None else (self.total_ms - self.measured.median_ms) / self.measured.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "resolution": self.resolution,
            "target": self.target,
            "layers": [
                {"name": la.name, "key": la.key.to_row(), "label": la.key.label(), **asdict(la.timing), "share_ms": la.share_ms}
                for la in self.layers
            ],
            "overhead": asdict(self.overhead),
            "layers_ms": self.layers_ms,
            "predicted_ms": self.total_ms,
            "measured": asdict(self.measured) if self.measured is not None else None,
            "error": self.error,
        }

    def table(self) -> str:
        """Plain-text per-layer breakdown with the total (and the measurement)."""
        head = f"{'layer':<11} {'configuration':<52} {'median ms':>9} {'p10-p90':>15} {'share ms':>9}"
        lines = [f"{self.model} at {self.resolution}x{self.resolution}; {self.target}", head, "-" * len(head)]
        for la in self.layers:
            t = la.timing
            lines.append(f"{la.name:<11} {la.key.label():<52} {t.median_ms:>9.4f} {t.p10_ms:>7.4f}-{t.p90_ms:<7.4f} {la.share_ms:>9.4f}")
        lines.append(f"{'overhead':<11} {'near-empty model (one runtime call)':<52} {self.overhead_ms:>9.4f}")
        lines.append(f"predicted {self.total_ms:.3f} ms = layers {self.layers_ms:.3f} + overhead {self.overhead_ms:.3f}")
        if self.measured is not None:
            m = self.measured
            lines.append(
                f"measured  {m.median_ms:.3f} ms (p10-p90 {m.p10_ms:.3f}-{m.p90_ms:.3f}, {m.runs} calls); error {100 * (self.error or 0.0):+.1f} %"
            )
        return "\n".join(lines)


def predict(table: LatencyTable, spec: ModelSpec, resolution: int, measurer: Measurer | None = None) -> Prediction:
    """Predict ``spec``'s latency at ``resolution``; missing entries are measured with ``measurer`` and cached (error without one)."""
    layers = network_layers(spec, resolution)
    over = overhead_key(spec, resolution)
    keys = [over, *(la.key for la in layers)]
    missing = table.missing(keys)
    if missing:
        if measurer is None:
            raise ValueError(
                f"{table.path} lacks {len(missing)} layer configuration(s) of {spec.name} at {resolution} "
                f"(e.g. {missing[0].label()}); measure them on the table's device"
            )
        fill(table, missing, measurer)
    entry = table.get(over)
    assert entry is not None
    o = entry.timing.median_ms
    out = []
    for la in layers:
        e = table.get(la.key)
        assert e is not None
        out.append(LayerPrediction(la.name, la.key, e.timing, e.timing.median_ms - o))
    return Prediction(spec.name, resolution, table.target.describe(), tuple(out), entry.timing)
