"""Decoding + NMS as an ONNX graph (``mnv3 export --nms``) against ``SSDLite.postprocess`` on the same raw outputs, for both
presets' post-processing (paper: sigmoid, 100 kept per class; torchvision: softmax, top-300 candidates, clamped box scale)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import mnv3
from mnv3.deploy.detection_nms import match, post_session, postprocess_graph, run_post
from mnv3.deploy.onnx_backend import OPSET

pytest.importorskip("onnxruntime")
SIZE = (128, 160)  # not square: x is clipped to W, y to H
CLASSES = 6


def _detector(preset: str, **post: object) -> torch.nn.Module:
    net = mnv3.create_model("ssdlite_mobilenetv3_small_100_reduced", num_classes=CLASSES, preset=preset, width=0.35).eval()
    if post:
        det = net.spec.detection
        det = dataclasses.replace(det, postprocess=dataclasses.replace(det.postprocess, **post))
        net = mnv3.create_model(net.spec.replace(detection=det)).eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, *SIZE))
    return net


def _both(net: torch.nn.Module, regression: torch.Tensor, logits: torch.Tensor) -> tuple[dict, dict]:
    anchors = net.anchors(SIZE).numpy()
    session = post_session(postprocess_graph(anchors, net.spec.detection, CLASSES, SIZE, OPSET))
    (ref,) = net.postprocess({"bbox_regression": regression, "cls_logits": logits}, [SIZE], SIZE)
    return ref, run_post(session, regression, logits)


@pytest.mark.parametrize("preset", ["paper", "torchvision"])
def test_graph_gives_the_detections_of_postprocess(preset: str):
    net = _detector(preset)
    n = net.anchors(SIZE).shape[0]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        regression, logits = torch.randn(1, n, 4, generator=g), 2 * torch.randn(1, n, CLASSES, generator=g)
        regression[0, :5, 2:] = 9.0  # huge boxes: torchvision's preset clamps dw, dh at log(1000 / 16), the paper's does not
        ref, got = _both(net, regression, logits)
        assert len(ref["scores"]) == len(got["scores"]) == net.spec.detection.postprocess.max_detections
        ok, idx = match(got, ref, score_tol=1e-6)  # matched, not in order: near-equal scores may swap places
        assert ok.all() and len(set(idx.tolist())) == len(idx)
        assert (got["boxes"] - ref["boxes"][idx]).abs().max() < 1e-3
        assert (got["scores"] - ref["scores"]).abs().max() < 1e-6  # both sorted best first
        assert (ref["boxes"][:, 2] > SIZE[0]).any() and ref["boxes"][:, 2].max() <= SIZE[1]  # x clipped to the width
        assert got["labels"].min() >= 1 and got["labels"].dtype == torch.int64  # the background is never reported


def test_few_survivors_and_none():
    """A score threshold that leaves fewer than max_detections boxes, and an image where none survive (K = 0)."""
    net = _detector("paper", score_threshold=0.9, max_per_class=7)
    n = net.anchors(SIZE).shape[0]
    g = torch.Generator().manual_seed(1)
    regression, logits = torch.randn(1, n, 4, generator=g), 2 * torch.randn(1, n, CLASSES, generator=g)
    ref, got = _both(net, regression, logits)
    assert 0 < len(ref["scores"]) <= 7 * (CLASSES - 1) < 100 and len(got["scores"]) == len(ref["scores"])
    ok, _ = match(got, ref, score_tol=1e-6)
    assert ok.all() and got["scores"].min() > 0.9
    ref, got = _both(net, regression, torch.full_like(logits, -30.0))
    assert len(ref["scores"]) == 0 and got["boxes"].shape == (0, 4) and got["labels"].shape == (0,)


def test_match_is_not_fooled_by_another_label_or_box():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    ref = {"boxes": boxes, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([1, 2])}
    ok, idx = match({"boxes": boxes.flip(0), "scores": torch.tensor([0.8, 0.9]), "labels": torch.tensor([2, 1])}, ref, 1e-6)
    assert ok.all() and idx.tolist() == [1, 0]
    ok, _ = match({"boxes": boxes, "scores": ref["scores"], "labels": torch.tensor([2, 1])}, ref)
    assert not ok.any()
    ok, _ = match({"boxes": boxes + 3, "scores": ref["scores"], "labels": ref["labels"]}, ref)
    assert not ok.any()
