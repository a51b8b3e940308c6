"""Latency lookup tables (paper §4.2): typed keys from a spec walk, the SQLite store, resumable builds, prediction, CLI."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from dataclasses import replace

import pytest
import torch

from mnv3.cli.main import main
from mnv3.models import build_network, build_spec
from mnv3.search import random_spec
from mnv3.search.lut import (
    LatencyTable,
    LayerKind,
    LutMismatchError,
    Measurer,
    Target,
    Timing,
    TimingPlan,
    build_table,
    layer_module,
    network_layers,
    overhead_key,
    predict,
)
from mnv3.search.lut.measure import layer_input
from mnv3.search.lut.predict import table_keys
from mnv3.spec import save_spec
from mnv3.spec.types import Activation, BlockSpec, HeadSpec, ModelSpec, StemSpec

RE, HS = Activation.RELU, Activation.HSWISH
FAST = TimingPlan(warmup=1, runs=4, repeats=1, chunk=2)
RES = 32


def tiny_spec() -> ModelSpec:
    """Four bottlenecks, the last two identical (one shared key), a small head."""
    blocks = (
        BlockSpec(3, 8, 8, False, RE, 1),  # no expansion, residual
        BlockSpec(3, 32, 16, True, HS, 2),
        BlockSpec(5, 48, 16, True, HS, 1),
        BlockSpec(5, 48, 16, True, HS, 1),
    )
    return ModelSpec("tiny", StemSpec(8, HS), blocks, HeadSpec(32, 32, HS), num_classes=10)


def timing(ms: float) -> Timing:
    return Timing(ms, ms * 0.9, ms * 1.2, ms * 0.8, ms * 1.5, 10, 2)


def test_keys_cover_every_layer_and_match_the_network():
    spec = tiny_spec()
    layers = network_layers(spec, RES)
    assert [la.name for la in layers] == ["stem", "block1", "block2", "block3", "block4", "head_conv", "pool", "hidden", "classifier"]
    assert [la.key.kind for la in layers] == [LayerKind.STEM] + [LayerKind.BOTTLENECK] * 4 + [
        LayerKind.HEAD_CONV, LayerKind.POOL, LayerKind.HIDDEN, LayerKind.CLASSIFIER
    ]
    assert layers[3].key == layers[4].key and layers[2].key != layers[3].key
    assert len(table_keys([spec], RES)) == 1 + 9 - 1  # overhead + layers - the shared one
    # every key builds the network's own layer: same input shape, same output with the network's weights
    net = build_network(spec).eval()
    mods = [net.stem, *net.blocks, net.head_conv]
    x = torch.randn(1, 3, RES, RES)
    with torch.inference_mode():
        for la, mod in zip(layers, mods, strict=False):
            k = la.key
            assert tuple(x.shape[1:]) == (k.in_ch, k.in_h, k.in_w), la.name
            alone = layer_module(k)
            alone.load_state_dict(mod.state_dict())
            y = mod(x)
            torch.testing.assert_close(alone(x), y)
            x = y
        pooled = layer_module(layers[6].key)(x)
        assert tuple(pooled.shape) == (1, layers[7].key.in_ch)
        assert tuple(layer_input(layers[7].key).shape) == (1, 32)


def test_keys_ignore_names_and_presets_where_the_layer_is_the_same():
    a = build_spec("mobilenetv3_large_100")
    b = build_spec("mobilenetv3_large_100", preset="torchvision")  # symmetric padding, same stride-1 layers
    ka, kb = network_layers(a, 64), network_layers(b, 64)
    for x, y in zip(ka, kb, strict=True):
        if x.key.kind is LayerKind.BOTTLENECK and x.key.stride == 1 and x.key.exp == y.key.exp:
            assert x.key == y.key
        if x.key.stride == 2:
            assert x.key != y.key  # TF 'SAME' vs symmetric padding on strided convs is another graph
    assert network_layers(a.replace(name="renamed"), 64) == [replace(la) for la in ka]
    with pytest.raises(ValueError, match="total stride"):
        network_layers(a, 16)


def test_store_round_trip_and_transactions(tmp_path):
    spec = tiny_spec()
    keys = table_keys([spec], RES)
    target = Target.here("eager", 1)
    path = tmp_path / "t.db"
    with LatencyTable(path, target, create=True) as t:
        t.put_many([(k, timing(0.1 * (i + 1))) for i, k in enumerate(keys)], load_avg=1.5)
        assert len(t) == len(keys) and t.missing(keys) == []
        with pytest.raises(sqlite3.Error), t._db:  # a failing transaction writes nothing
            t._db.execute("DELETE FROM entries")
            t._db.execute("INSERT INTO nowhere VALUES (1)")
        assert len(t) == len(keys)
    with LatencyTable(path) as t:
        assert t.target == target
        for i, k in enumerate(keys):
            e = t.get(k)
            assert e is not None and e.key == k and e.timing == timing(0.1 * (i + 1)) and e.load_avg == 1.5
        t.put_many([(keys[0], timing(9.0))])  # replaces, does not duplicate
        assert len(t) == len(keys) and t.get(keys[0]).timing.median_ms == 9.0


def test_mismatched_runtime_threads_or_device_is_an_error(tmp_path):
    path = tmp_path / "t.db"
    here = Target.here("eager", 1)
    LatencyTable(path, here, create=True).close()
    for other in (
        replace(here, runtime="onnxruntime", runtime_version="1.0"),
        replace(here, threads=2),
        replace(here, cpu="Some Other CPU", cores=8),
    ):
        with pytest.raises(LutMismatchError) as e:
            LatencyTable(path, other)
        assert here.describe() in str(e.value) and other.describe() in str(e.value)
    with pytest.raises(FileNotFoundError):
        LatencyTable(tmp_path / "none.db")
    (tmp_path / "bad.db").write_text("not sqlite " * 100)
    with pytest.raises(ValueError, match="not a latency table"):
        LatencyTable(tmp_path / "bad.db")


def test_interrupted_build_keeps_finished_groups_and_resumes_only_the_rest(tmp_path, monkeypatch):
    spec = tiny_spec()
    keys = table_keys([spec], RES)
    path = tmp_path / "t.db"
    measured: list = []
    real = Measurer.measure

    def counting(self, part):
        if len(measured) >= 4:  # the third group dies mid-build
            raise RuntimeError("killed")
        measured.extend(part)
        return real(self, part)

    monkeypatch.setattr(Measurer, "measure", counting)
    target = Target.here("eager", 1)
    with LatencyTable(path, target, create=True) as t, pytest.raises(RuntimeError, match="killed"):
        build_table(t, [spec], RES, Measurer("eager", 1, FAST), group=2)
    with LatencyTable(path, target) as t:
        assert len(t) == 4 and t.missing(keys) == keys[4:]
    monkeypatch.setattr(Measurer, "measure", lambda self, part: (measured.extend(part), real(self, part))[1])
    measured.clear()
    with LatencyTable(path, target, create=True) as t:
        assert build_table(t, [spec], RES, Measurer("eager", 1, FAST), group=2) == len(keys) - 4
        assert measured == keys[4:] and len(t) == len(keys)
        assert build_table(t, [spec], RES, Measurer("eager", 1, FAST)) == 0  # complete: nothing to do


def test_prediction_is_layer_shares_plus_overhead_and_measures_missing(tmp_path):
    spec = tiny_spec()
    with LatencyTable(tmp_path / "t.db", Target.here("eager", 1), create=True) as t:
        with pytest.raises(ValueError, match="lacks"):
            predict(t, spec, RES)
        keys = table_keys([spec], RES)
        t.put_many([(k, timing(0.5 if k.kind is LayerKind.OVERHEAD else 1.0 + i)) for i, k in enumerate(keys)])
        p = predict(t, spec, RES)
        o = t.get(overhead_key(spec, RES)).timing.median_ms
        assert o == 0.5 and p.overhead_ms == o
        for la in p.layers:
            assert la.share_ms == pytest.approx(t.get(la.key).timing.median_ms - o)
        assert p.total_ms == pytest.approx(sum(la.share_ms for la in p.layers) + o)
        assert p.to_dict()["predicted_ms"] == pytest.approx(p.total_ms)
        # another resolution: every entry is missing, measured on demand and cached
        p2 = predict(t, spec, 40, Measurer("eager", 1, FAST))
        assert len(p2.layers) == 9 and t.missing([la.key for la in p2.layers]) == []


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed")
def test_onnxruntime_measures_conv_and_2d_layers():
    spec = tiny_spec()
    layers = network_layers(spec, RES)
    keys = [overhead_key(spec, RES), layers[2].key, layers[6].key, layers[8].key]  # block, pool, classifier
    out = Measurer("onnxruntime", 1, FAST).measure(keys)
    assert len(out) == 4 and all(0 < t.min_ms <= t.median_ms <= t.max_ms and t.runs == 4 for t in out)


def test_cli_build_show_predict(tmp_path, capsys):
    spec_file = tmp_path / "tiny.json"
    save_spec(tiny_spec(), spec_file)
    db = str(tmp_path / "lut.db")
    fast = ["--warmup", "1", "--runs", "4", "--repeats", "1"]
    assert main(["lut", "build", str(spec_file), "--runtime", "eager", "--resolution", str(RES), "-o", db, *fast]) == 0
    assert "9 entries (0 kept, 9 measured now)" in capsys.readouterr().out
    assert main(["lut", "build", str(spec_file), "--runtime", "eager", "--resolution", str(RES), "-o", db, "--json", *fast]) == 0
    assert json.loads(capsys.readouterr().out)["measured"] == 0
    assert main(["lut", "show", db]) == 0
    shown = capsys.readouterr().out
    assert "eager" in shown and "bottleneck 16x16 8->32->16 k3 s2 SE(8) hswish same" in shown
    assert main(["lut", "show", db, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["entries"]) == 9
    assert main(["lut", "predict", db, str(spec_file), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["resolution"] == RES and len(d["layers"]) == 9 and d["measured"] is None
    assert d["predicted_ms"] == pytest.approx(sum(la["share_ms"] for la in d["layers"]) + d["overhead"]["median_ms"])
    assert main(["lut", "predict", db, str(spec_file), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out
    # another runtime for the same table: one line, exit 2, naming both
    assert main(["lut", "build", str(spec_file), "--runtime", "onnxruntime", "--resolution", str(RES), "-o", db]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mnv3 lut: error:") and "eager" in err[0] and "onnxruntime" in err[0]
    assert main(["lut", "show", str(tmp_path / "missing.db")]) == 2


def test_prediction_against_measured_eager_is_recorded(tmp_path, record_property):
    """Not an accuracy bound (the machine is shared): the figures go to docs/benchmarks.md via bench/lut_accuracy.py."""
    specs = [tiny_spec(), build_spec("mobilenetv3_small_035"), random_spec(0, base=build_spec("mobilenetv3_small_050"))]
    m = Measurer("eager", 1, TimingPlan(warmup=2, runs=10, repeats=2, chunk=5))
    with LatencyTable(tmp_path / "t.db", Target.here("eager", 1), create=True) as t:
        build_table(t, specs, RES, m)
        preds = [predict(t, s, RES) for s in specs]
    measured = m.measure_networks([build_network(s) for s in specs], RES)
    for s, p, w in zip(specs, preds, measured, strict=True):
        assert p.total_ms > 0 and w.median_ms > 0
        record_property(f"{s.name}@{RES}", f"predicted {p.total_ms:.3f} ms, measured {w.median_ms:.3f} ms")


def test_a_head_without_hidden_layer_classifies_the_pooled_conv():
    """MnasNet-A1's head (hidden = 0): conv -> pool -> classifier, with no 1280 layer to time."""
    from mnv3.models.registry import resolve_spec

    spec = resolve_spec("mnasnet_a1")
    assert spec.head.hidden == 0
    names = [la.name for la in network_layers(spec, 224)][-3:]
    assert names == ["head_conv", "pool", "classifier"]
    assert network_layers(spec, 224)[-1].key.in_ch == spec.head.conv_out
