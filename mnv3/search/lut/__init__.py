"""Latency lookup tables (paper §4.2: NetAdapt optimises measured latency; NetAdapt, arXiv 1804.03230, predicts it from per-layer tables).

``keys`` walks a spec into typed per-layer keys, ``store`` keeps their measured latency in SQLite
with the device and runtime it belongs to, ``measure`` times each distinct layer alone in a
runtime, ``predict`` sums a network's layers plus the runtime's fixed per-call overhead.
"""

from mnv3.search.lut.keys import Layer, LayerKey, LayerKind, network_layers, overhead_key
from mnv3.search.lut.measure import MEASURABLE, Measurer, TimingPlan, layer_module
from mnv3.search.lut.predict import LayerPrediction, Prediction, build_table, predict
from mnv3.search.lut.store import Entry, LatencyTable, LutMismatchError, Target, Timing

__all__ = [
    "Entry", "LatencyTable", "Layer", "LayerKey", "LayerKind", "LayerPrediction", "LutMismatchError", "MEASURABLE",
    "Measurer", "Prediction", "Target", "Timing", "TimingPlan", "build_table", "layer_module", "network_layers",
    "overhead_key", "predict",
]
