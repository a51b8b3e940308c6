"""``mnv3 bench`` end to end with tiny run counts, the interleaving harness, the records, the peers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import runtimes
from mnv3.deploy.bench import Case, measure, ratios, summarize
from mnv3.deploy.peers import torchvision_equivalent
from mnv3.deploy.predictor import Predictor
from mnv3.deploy.records import SCHEMA, LatencyRecord, Machine, read_jsonl
from mnv3.deploy.runtimes import Runtime


@pytest.mark.slow
@pytest.mark.skipif(not runtimes.available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'")
def test_bench_cli_end_to_end(tmp_path, capsys):
    out, png = tmp_path / "bench.jsonl", tmp_path / "layers.png"
    args = ["bench", "mobilenetv3_small_100", "--runtime", "eager", "onnxruntime", "--runs", "3", "--warmup", "1", "--chunk", "2"]
    args += ["--repeats", "2", "--resolution", "64", "--compare", "torchvision", "--records", str(out), "--plot", str(png)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "machine:" in text and "ratios (mnv3 / torchvision" in text and "per-layer breakdown" in text
    records = read_jsonl(out)
    assert len(records) == 2 * 2 * 2  # (mnv3, torchvision) x (eager, onnxruntime) x repeats
    assert {(r.source, r.runtime) for r in records} == {
        (s, rt) for s in ("mnv3", "torchvision") for rt in ("eager", "onnxruntime")
    }
    for r in records:
        assert r.runs == 3 and r.threads == 1 and r.batch == 1 and r.resolution == 64 and r.precision == "fp32"
        assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms and r.machine.cores >= 1
        assert r.runtime_version not in ("", "not installed")
    layers = [json.loads(line) for line in out.read_text().splitlines() if "layer-latency" in line]
    names = [d["layer"] for d in layers]
    assert names[0] == "stem" and "blocks.10" in names and names[-1] == "head"
    assert math.isclose(sum(d["share"] for d in layers), 1.0, rel_tol=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Counting(Predictor):
    """Records the order of calls; ``run`` does a little real work so timings are positive."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, fed):
        self.log.append(self.name)
        return np.tanh(np.arange(64.0)).sum()


def _case(name: str, log: list[str]) -> Case:
    return Case("mnv3" if name == "a" else "torchvision", "m", Runtime.EAGER, "fp32", 1, 1, 32, 3, Counting(name, log), None, 0.0)


def test_measure_interleaves_chunks_and_honours_counts():
    log: list[str] = []
    cases = [_case("a", log), _case("b", log)]
    records = measure(cases, warmup=2, runs=5, repeats=2, chunk=2)
    assert log[:4] == ["a", "a", "b", "b"]  # warm-up
    timed = log[4:]
    # per chunk: one untimed re-warm call, then up to `chunk` timed calls; order reversed every round
    assert timed[:6] == ["a"] * 3 + ["b"] * 3 and timed[6:12] == ["b"] * 3 + ["a"] * 3
    assert timed.count("a") == timed.count("b") == 2 * (5 + 3)  # 5 timed + 3 re-warm calls per repeat
    assert len(records) == 4 and {r.repeat for r in records} == {0, 1} and all(r.runs == 5 for r in records)
    assert len(summarize(records)) == 2
    (same, fastest) = ratios(records, "torchvision")
    assert same.what == "same runtime" and len(same.per_repeat) == 2 and fastest.what == "fastest vs fastest"
    assert same.ratio == pytest.approx(
        np.median([a.median_ms / b.median_ms for a, b in zip(records[0::2], records[1::2], strict=True)])
    )


def test_latency_record_round_trip_and_schema():
    m = Machine.detect()
    r = LatencyRecord(
        "mobilenetv3_small_100",
        "mnv3",
        "onnxruntime",
        "1.0",
        "int8",
        1,
        1,
        224,
        3,
        10,
        50,
        1.0,
        1.2,
        0.9,
        2.0,
        1.1,
        1000.0,
        m,
        load_avg=(0.5, 0.4, 0.3),
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert LatencyRecord.from_dict(d) == r and d["schema"] == SCHEMA
    assert r.key() == ("mnv3", "mobilenetv3_small_100", "onnxruntime", "int8", 1, 1, 224)
    with pytest.raises(ValueError, match="not a mnv3.latency/1 record"):
        LatencyRecord.from_dict({**d, "schema": "other/2"})
    with pytest.raises(ValueError, match="unknown field"):
        LatencyRecord.from_dict({**d, "colour": "red"})
    assert m.cpu and m.cores >= 1 and m.arch in m.line()


def test_torchvision_equivalent_is_the_same_network():
    for name in ("mobilenetv3_large_075", "mobilenetv3_small_100_detection"):
        ours = mnv3.create_model(name, preset="torchvision").eval()
        tv, call = torchvision_equivalent(ours)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(tv(x), ours(x), atol=1e-5), call  # weights copied: same logits
        assert sum(p.numel() for p in tv.parameters()) == sum(p.numel() for p in ours.parameters())
    with pytest.raises(ValueError, match="minimalistic"):
        torchvision_equivalent(mnv3.create_model("mobilenetv3_large_minimal_100"))


def test_peer_follows_the_overrides_not_the_name(capsys):
    """Issue: a width-0.5 Large compared against a width-1.0 torchvision network. The peer is built from the spec."""
    ours = mnv3.create_model("mobilenetv3_large_100", width=0.5, preset="torchvision").eval()
    assert ours.spec.name == "mobilenetv3_large_100+width=0.5"
    tv, call = torchvision_equivalent(ours)
    assert "width_mult=0.5" in call
    assert sum(p.numel() for p in tv.parameters()) == sum(p.numel() for p in ours.parameters()) == 1_734_576
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(tv(x), ours(x))
    # under the paper's rounding a width-0.75 Large is another network than torchvision's: refused, not compared
    with pytest.raises(ValueError, match="not the same network"):
        torchvision_equivalent(mnv3.create_model("mobilenetv3_large_100", width=0.75))
    # the CLI: the same peer, the records name the overridden network
    args = ["bench", "mobilenetv3_large_100", "--width", "0.5", "--preset", "torchvision", "--runtime", "eager", "--runs", "2",
            "--warmup", "0", "--resolution", "32", "--compare", "torchvision", "--json"]
    assert main(args) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["model"] for r in records if r["source"] == "mnv3"} == {"mobilenetv3_large_100+width=0.5"}
    assert any("width_mult=0.5" in r["model"] for r in records if r["source"] == "torchvision")
