"""Decoding + per-class NMS inside an exported ONNX detector (``mnv3 export --nms``), equal to ``SSDLite.postprocess``.

The raw graph (:mod:`mnv3.deploy.detection`) ends at box codes and class logits; this module builds the
post-processing as a second ONNX graph, with the anchors as constants, and joins the two with
``onnx.compose.merge_models``, so that fp32 and int8 files alike end at ``boxes`` (K, 4; xyxy in input
pixels), ``scores`` (K,) and ``labels`` (K,; 1..C-1), K <= ``max_detections``, for one image. The steps are
the model's (paper §6.3 through the TF Object Detection API and torchvision's SSD): decode with the box
coder, clip to the input, sigmoid or softmax, the top ``candidates_per_class`` of each class, ONNX
``NonMaxSuppression`` per class (its batch axis carries the classes, each with its own candidates; at most
``max_per_class`` kept), then the best ``max_detections``. ONNX Runtime runs it; ExecuTorch and LiteRT files
keep the raw outputs (their NMS is not a standard operator there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

OUTPUTS = ("boxes", "scores", "labels")
DECODING = "in the graph: box coder, clip to the input, per-class NMS (ONNX NonMaxSuppression); one image per call"  # mnv3.decoding


def check_nms_format(fmt: str) -> None:
    """``--nms`` needs ONNX (its NonMaxSuppression operator); refuse any other format before any work is done."""
    if fmt != "onnx":
        raise ValueError(
            f"--nms puts decoding + NMS in ONNX graphs only (ONNX NonMaxSuppression); {fmt} files end at the raw "
            "outputs, decoded outside the graph: drop --nms or use --format onnx"
        )


def postprocess_graph(anchors: np.ndarray, detection, num_classes: int, input_size: tuple[int, int], opset: int):
    """The post-processing of ``detection`` (an ``SSDLiteSpec``) on ``anchors`` (A, 4) as an ONNX model.

    Inputs ``bbox_regression`` (1, A, 4) and ``cls_logits`` (1, A, C); outputs :data:`OUTPUTS`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mnv3.spec.detection import ScoreFunction

    coder, p = detection.box_coder, detection.postprocess
    a = np.asarray(anchors, np.float32)
    n_anchors = a.shape[0]
    awh = np.stack([a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1).astype(np.float32)
    axy = (a[:, :2] + np.float32(0.5) * awh).astype(np.float32)  # the float32 arithmetic of mnv3.models.boxes.decode_boxes
    h, w = input_size
    k = n_anchors if p.candidates_per_class is None else min(p.candidates_per_class, n_anchors)
    consts = {
        "axes0": np.array([0], np.int64),
        "split22": np.array([2, 2], np.int64),
        "awh": awh,
        "axy": axy,
        "wxy": np.array(coder.weights[:2], np.float32),
        "wwh": np.array(coder.weights[2:], np.float32),
        "half": np.array(0.5, np.float32),
        "zero": np.array(0.0, np.float32),
        "size": np.array([w, h, w, h], np.float32),
        "from1": np.array([1], np.int64),
        "toC": np.array([num_classes], np.int64),
        "axes1": np.array([1], np.int64),
        "k": np.array([k], np.int64),
        "max_out": np.array([p.max_per_class if p.max_per_class is not None else k], np.int64),
        "iou": np.array([p.nms_iou], np.float32),
        "score_thr": np.array([p.score_threshold], np.float32),
        "cols02": np.array([0, 2], np.int64),
        "col0": np.array(0, np.int64),
        "one": np.array(1, np.int64),
        "max_det": np.array([p.max_detections], np.int64),
    }
    init = [numpy_helper.from_array(v, f"pp_{n}") for n, v in consts.items()]
    c = {n: f"pp_{n}" for n in consts}
    node = helper.make_node
    nodes = [
        node("Squeeze", ["bbox_regression", c["axes0"]], ["codes"]),
        node("Squeeze", ["cls_logits", c["axes0"]], ["logits"]),
        node("Split", ["codes", c["split22"]], ["dxy", "dwh_raw"], axis=1),
        node("Div", ["dxy", c["wxy"]], ["dxy_s"]),
        node("Mul", ["dxy_s", c["awh"]], ["dxy_a"]),
        node("Add", ["dxy_a", c["axy"]], ["cxy"]),
        node("Div", ["dwh_raw", c["wwh"]], ["dwh"]),
    ]
    dwh = "dwh"
    if coder.scale_clamp is not None:
        init.append(numpy_helper.from_array(np.array(coder.scale_clamp, np.float32), "pp_clamp"))
        nodes.append(node("Min", ["dwh", "pp_clamp"], ["dwh_c"]))
        dwh = "dwh_c"
    softmax = p.score_function is ScoreFunction.SOFTMAX
    nodes += [
        node("Exp", [dwh], ["ewh"]),
        node("Mul", ["ewh", c["awh"]], ["wh"]),
        node("Mul", [c["half"], "wh"], ["half_wh"]),
        node("Sub", ["cxy", "half_wh"], ["x1y1"]),
        node("Add", ["cxy", "half_wh"], ["x2y2"]),
        node("Concat", ["x1y1", "x2y2"], ["boxes_raw"], axis=1),
        node("Min", ["boxes_raw", c["size"]], ["boxes_hi"]),
        node("Max", ["boxes_hi", c["zero"]], ["all_boxes"]),  # torchvision.ops.clip_boxes_to_image
        node("Softmax" if softmax else "Sigmoid", ["logits"], ["probs"], **({"axis": -1} if softmax else {})),
        node("Slice", ["probs", c["from1"], c["toC"], c["axes1"]], ["fg"]),  # class 0 is the background
        node("Transpose", ["fg"], ["fg_t"], perm=[1, 0]),  # (C-1, A)
        node("TopK", ["fg_t", c["k"]], ["cand_scores", "cand_idx"], axis=1, largest=1, sorted=1),
        node("Gather", ["all_boxes", "cand_idx"], ["cand_boxes"], axis=0),  # (C-1, k, 4)
        node("Unsqueeze", ["cand_scores", c["axes1"]], ["nms_scores"]),  # (C-1, 1, k): one NMS "batch" per class
        node("NonMaxSuppression", ["cand_boxes", "nms_scores", c["max_out"], c["iou"], c["score_thr"]], ["selected"]),
        node("Gather", ["selected", c["cols02"]], ["sel_ci"], axis=1),  # (S, 2): class, candidate
        node("GatherND", ["cand_scores", "sel_ci"], ["sel_scores"]),
        node("GatherND", ["cand_boxes", "sel_ci"], ["sel_boxes"]),
        node("Gather", ["selected", c["col0"]], ["sel_class"], axis=1),
        node("Add", ["sel_class", c["one"]], ["sel_labels"]),
        node("Shape", ["sel_scores"], ["n_sel"]),
        node("Min", ["n_sel", c["max_det"]], ["n_keep"]),
        node("TopK", ["sel_scores", "n_keep"], ["scores", "order"], axis=0, largest=1, sorted=1),
        node("Gather", ["sel_boxes", "order"], ["boxes"], axis=0),
        node("Gather", ["sel_labels", "order"], ["labels"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mnv3_ssdlite_postprocess",
        [
            helper.make_tensor_value_info("bbox_regression", TensorProto.FLOAT, [1, n_anchors, 4]),
            helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, [1, n_anchors, num_classes]),
        ],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K"]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, ["K"]),
        ],
        initializer=init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def append_postprocess(raw, post):
    """``raw`` (images -> bbox_regression, cls_logits) followed by ``post``: one graph, batch fixed at 1, raw metadata kept."""
    import onnx
    from onnx import compose

    post = onnx.helper.make_model(post.graph, opset_imports=list(raw.opset_import), ir_version=raw.ir_version)
    post = compose.add_prefix(post, "pp/", rename_inputs=False, rename_outputs=False)
    merged = compose.merge_models(raw, post, io_map=[("bbox_regression", "bbox_regression"), ("cls_logits", "cls_logits")])
    for inp in merged.graph.input:  # one image per call: the NMS graph has no batch axis
        inp.type.tensor_type.shape.dim[0].ClearField("dim_param")
        inp.type.tensor_type.shape.dim[0].dim_value = 1
    del merged.metadata_props[:]
    merged.metadata_props.extend(raw.metadata_props)
    onnx.checker.check_model(merged)
    return merged


@dataclass
class NmsParity:
    """The in-graph post-processing against ``SSDLite.postprocess``, and the joined file against its two parts."""

    draws: int  # synthetic raw outputs (random box codes and logits: no tied scores)
    post_match: float  # share of the graph's detections on them that SSDLite.postprocess gives too
    max_box_diff: float  # over the matched pairs, px
    max_score_diff: float
    images: int  # sample images through the network
    network_match: float  # the same share on the network's raw outputs (an untrained or int8 head ties scores: lower)
    joined_match: float  # share of the joined file's detections that its two parts, run one after the other, give

    def summary(self) -> str:
        return (
            f"in-graph decoding + NMS vs SSDLite.postprocess on {self.draws} random raw outputs: {100 * self.post_match:.1f} % "
            f"of detections the same (label, box within {self.max_box_diff:.3g} px, score within {self.max_score_diff:.3g}); "
            f"on the network's outputs for {self.images} images {100 * self.network_match:.1f} % (tied scores of an untrained or "
            f"int8 head leave NMS's choice open); joined file vs its two "
            f"parts: {100 * self.joined_match:.1f} %"
        )


def post_session(post):
    """An ONNX Runtime session (1 thread) on the post-processing graph alone."""
    import onnxruntime as ort

    from mnv3.deploy.onnx_backend import session_options

    return ort.InferenceSession(post.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])


def run_post(session, regression: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The post-processing graph's ``{"boxes", "scores", "labels"}`` for one image's raw outputs (1, A, 4), (1, A, C)."""
    outs = session.run(None, {"bbox_regression": regression.numpy(), "cls_logits": logits.numpy()})
    return dict(zip(OUTPUTS, (torch.from_numpy(o) for o in outs), strict=True))


def match(got: dict, ref: dict, score_tol: float = float("inf")) -> tuple[torch.Tensor, torch.Tensor]:
    """For each detection of ``got``: whether ``ref`` has one of the same label, IoU >= 0.99 and score within ``score_tol``; and which.

    Matching rather than comparing in order: where two scores tie to float32 noise, their order (and
    which of two overlapping tied boxes NMS keeps) is not defined.
    """
    from torchvision.ops import box_iou

    if not len(got["labels"]) or not len(ref["labels"]):
        return torch.zeros(len(got["labels"]), dtype=torch.bool), torch.zeros(len(got["labels"]), dtype=torch.int64)
    ok = (got["labels"][:, None] == ref["labels"][None, :]) & ((got["scores"][:, None] - ref["scores"][None, :]).abs() <= score_tol)
    iou = box_iou(got["boxes"], ref["boxes"]) * ok
    best = iou.max(1)
    return best.values >= 0.99, best.indices


def _compare(model: torch.nn.Module, session, regression: torch.Tensor, logits: torch.Tensor, size: tuple[int, int]):
    """(graph's detections, matched flags, max box diff, max score diff) of one image's raw outputs."""
    (ref,) = model.postprocess({"bbox_regression": regression, "cls_logits": logits}, [size], size)
    got = run_post(session, regression, logits)
    ok, idx = match(got, ref, score_tol=1e-4)
    if not ok.any():
        return got, ok, 0.0, 0.0
    box = float((got["boxes"][ok] - ref["boxes"][idx[ok]]).abs().max())
    return got, ok, box, float((got["scores"][ok] - ref["scores"][idx[ok]]).abs().max())


def check_postprocess(
    model: torch.nn.Module, raw_predictor, post, full_predictor, samples: torch.Tensor, draws: int = 8, min_match: float = 0.98
) -> NmsParity:
    """Check the post-processing graph ``post`` against ``model.postprocess``, then the joined file against its two parts.

    The post-processing is compared on the *same* raw outputs: ``draws`` random ones (no scores tie, so
    NMS's answer is unique: at least ``min_match`` must agree) and the raw file's on ``samples``
    (reported; an untrained head gives many equal scores, among which NMS's choice is not defined). The
    joined file recomputes the network, which ONNX Runtime may fuse differently (float noise of about
    1e-5), so it is matched against the two parts run one after the other (at least 90 %). Raises
    ValueError with the figures below a floor; nothing is written then.
    """
    size = (int(samples.shape[-2]), int(samples.shape[-1]))
    session = post_session(post)
    n_anchors, n_classes = (d.dim_value for d in post.graph.input[1].type.tensor_type.shape.dim[1:])
    gen = torch.Generator().manual_seed(0)
    same = total = 0
    box_diff = score_diff = 0.0
    for _ in range(draws):
        regression = torch.randn(1, n_anchors, 4, generator=gen)
        logits = 2 * torch.randn(1, n_anchors, n_classes, generator=gen)
        _, ok, b, sc = _compare(model, session, regression, logits, size)
        same, total, box_diff, score_diff = same + int(ok.sum()), total + len(ok), max(box_diff, b), max(score_diff, sc)
    net_same = net_total = joined_same = joined_total = 0
    for i in range(len(samples)):
        x = samples[i : i + 1]
        regression, logits = (torch.from_numpy(o) for o in raw_predictor.run_outputs(raw_predictor.feed(x)))
        got, ok, _, _ = _compare(model, session, regression, logits, size)
        net_same, net_total = net_same + int(ok.sum()), net_total + len(ok)
        joined = dict(zip(OUTPUTS, (torch.from_numpy(o) for o in full_predictor.run_outputs(full_predictor.feed(x))), strict=True))
        ok_joined, _ = match(joined, got)
        joined_same, joined_total = joined_same + int(ok_joined.sum()), joined_total + len(ok_joined)
    share = lambda a, b: a / b if b else 1.0  # noqa: E731
    parity = NmsParity(draws, share(same, total), box_diff, score_diff, len(samples), share(net_same, net_total),
                       share(joined_same, joined_total))  # fmt: skip
    if parity.post_match < min_match or parity.joined_match < 0.9 or box_diff > 1e-3:
        raise ValueError(f"{parity.summary()}: below {100 * min_match:.0f} % / 90 % or boxes off by over 1e-3 px; nothing written")
    return parity
