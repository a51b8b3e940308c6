"""``mnv3 bench --compare torchvision`` on a detector (raw head outputs) and a segmenter (``out`` logits, HxW input):
records for both sources in eager and ONNX Runtime, ratios printed, the peer's outputs shaped as mnv3's; typed peer lookup."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import mnv3
from mnv3.cli.main import main
from mnv3.deploy import runtimes
from mnv3.deploy.peers import PEER_BUILDERS, NetworkKind, Peer, network_kind, peer_model, timed_module
from mnv3.deploy.records import read_jsonl

pytestmark = pytest.mark.skipif(
    not runtimes.available("onnx"), reason="ONNX Runtime is not installed: pip install 'mnv3[export]'"
)
TINY = ["--runtime", "eager", "onnxruntime", "--runs", "2", "--warmup", "1", "--chunk", "1", "--compare", "torchvision"]


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _shapes(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in (out if isinstance(out, tuple) else (out,))]


def _bench(argv: list[str], tmp_path, capsys) -> tuple[list, str]:
    records = tmp_path / "bench.jsonl"
    assert main(["bench", *argv, *TINY, "--records", str(records)]) == 0
    return read_jsonl(records), capsys.readouterr().out


def _check_records(records: list, resolution: int, width: int | None) -> None:
    assert {(r.source, r.runtime) for r in records} == {
        (s, rt) for s in ("mnv3", "torchvision") for rt in ("eager", "onnxruntime")
    }
    for r in records:
        assert r.runs == 2 and r.resolution == resolution and r.width == width and 0 < r.min_ms <= r.median_ms <= r.max_ms


def test_peer_lookup_is_by_network_kind():
    assert set(PEER_BUILDERS) == {(Peer.TORCHVISION, k) for k in NetworkKind}
    assert network_kind(mnv3.create_model("ssdlite_mobilenetv3_small_100_reduced").spec) is NetworkKind.DETECTOR
    assert network_kind(mnv3.create_model("lraspp_mobilenetv3_small_100").spec) is NetworkKind.SEGMENTER
    with pytest.raises(ValueError, match="cannot express the small family"):
        peer_model("torchvision", mnv3.create_model("ssdlite_mobilenetv3_small_100_reduced"))
    with pytest.raises(ValueError, match="cannot express the raspp head"):
        peer_model("torchvision", mnv3.create_model("raspp_mobilenetv3_large_100"))


@pytest.mark.slow  # two ONNX exports of Large SSDLites (torchvision has no other), ~20 s on two cores
def test_detector_bench_times_raw_outputs_against_torchvisions_ssdlite(tmp_path, capsys):
    ours = mnv3.create_model("ssdlite_mobilenetv3_large_100_reduced", preset="torchvision").eval()
    peer, call = peer_model("torchvision", ours)
    assert call.startswith("torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert _shapes(peer(x)) == _shapes(timed_module(ours)(x))  # (N, A, 4) and (N, A, 91): the same anchors and classes
    records, text = _bench(
        ["ssdlite_mobilenetv3_large_100_reduced", "--preset", "torchvision", "--resolution", "96"], tmp_path, capsys
    )
    _check_records(records, 96, None)
    assert "ratios (mnv3 / torchvision" in text and "same runtime" in text and "mnv3 onnxruntime" in text


def test_segmenter_bench_takes_hxw_and_times_torchvisions_out(tmp_path, capsys):
    ours = mnv3.create_model("lraspp_mobilenetv3_large_100").eval()
    peer, call = peer_model("torchvision", ours)
    assert call.endswith("lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=19)['out']")
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        assert _shapes(peer(x)) == _shapes(ours(x)) == [(1, 19, 32, 64)]
    records, text = _bench(["lraspp_mobilenetv3_large_100", "--resolution", "32x64"], tmp_path, capsys)
    _check_records(records, 32, 64)
    assert "input 32x64" in text and "ratios (mnv3 / torchvision" in text


def test_hxw_is_for_dense_tasks_only(capsys):
    assert main(["bench", "mobilenetv3_small_050", "--resolution", "32x64", "--runtime", "eager", "--runs", "1"]) == 2
    assert "a classifier is timed on square inputs" in capsys.readouterr().err
