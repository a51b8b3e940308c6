"""The typed SSDLite head spec (paper §6.3): extra layers, anchors, box coder, matcher, loss and NMS settings.

An :class:`SSDLiteSpec` on a :class:`~mnv3.spec.types.ModelSpec` (field ``detection``) turns the
backbone into the SSDLite detector; its two presets (``paper``: the TF Object Detection API's
``ssdlite_mobilenet_v3_{large,small}_320x320_coco`` configs; ``torchvision``:
``torchvision/models/detection/ssdlite.py``) live in :mod:`mnv3.spec.conventions`. Like the
backbone's, its widths are concrete, so it serialises with the rest of the spec and rebuilds.
The loss, matcher and post-processing fields are recorded here for the detection task and the
model's ``postprocess``; the network itself does not use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class AnchorLayout(str, Enum):
    """How anchors are ordered and sized (paper §6.3 uses the TF Object Detection API's SSD anchors).

    TF_OD_API: ``multiple_grid_anchor_generator.create_ssd_anchors``: the aspect ratios in order, then
    the interpolated scale; sizes not clipped; boxes square in pixels on non-square images.
    TORCHVISION: ``DefaultBoxGenerator``: ratio 1, the interpolated scale, then the other ratios;
    widths and heights clipped to [0, 1] of the image side.
    """

    TF_OD_API = "tf_od_api"
    TORCHVISION = "torchvision"


class ScoreFunction(str, Enum):
    """Logits to class scores: sigmoid (TF OD API ``score_converter: SIGMOID``) or softmax (torchvision SSD)."""

    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


class ClassificationLoss(str, Enum):
    """The class loss the detection task trains with (recorded here, computed by the task)."""

    SIGMOID_FOCAL = "sigmoid_focal"  # TF OD API weighted_sigmoid_focal
    SOFTMAX_HARD_NEGATIVES = "softmax_hard_negatives"  # torchvision SSD: cross-entropy, 3:1 hard negative mining


@dataclass(frozen=True)
class AnchorSpec:
    """SSD anchors: scales ``min_scale..max_scale`` over the layers, aspect ratios, interpolated scale (TF OD API ssd_anchor_generator)."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0  # the box of scale sqrt(s_k s_k+1); 0 = none
    reduce_boxes_in_lowest_layer: bool = True  # layer 0 gets 3 boxes: (0.1, 1), (s0, 2), (s0, 1/2)
    layout: AnchorLayout = AnchorLayout.TF_OD_API


@dataclass(frozen=True)
class BoxCoderSpec:
    """Faster R-CNN box coding: (dx, dy, dw, dh) scaled by ``weights``; ``scale_clamp`` caps dw, dh before exp."""

    weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    scale_clamp: float | None = None  # torchvision: log(1000 / 16); TF OD API: none


@dataclass(frozen=True)
class MatcherSpec:
    """Anchor-to-box matching: argmax IoU above ``iou_threshold``, each ground-truth box forced to its best anchor."""

    iou_threshold: float = 0.5
    force_match_for_each_box: bool = True


@dataclass(frozen=True)
class LossSpec:
    """The training loss' settings: focal (alpha, gamma) or softmax with hard negatives, plus smooth L1 on the boxes."""

    classification: ClassificationLoss = ClassificationLoss.SIGMOID_FOCAL
    focal_alpha: float | None = 0.75
    focal_gamma: float | None = 2.0
    negative_ratio: float | None = None  # hard negatives per positive (softmax loss only)
    smooth_l1_delta: float = 1.0
    classification_weight: float = 1.0
    localization_weight: float = 1.0


@dataclass(frozen=True)
class PostprocessSpec:
    """Decoding and per-class NMS: score threshold, candidates per class, IoU, detections kept."""

    score_function: ScoreFunction = ScoreFunction.SIGMOID
    score_threshold: float = 1e-8
    candidates_per_class: int | None = None  # top-k of each class before NMS (torchvision's topk_candidates)
    max_per_class: int | None = 100  # kept per class after NMS (TF OD API max_detections_per_class)
    nms_iou: float = 0.6
    max_detections: int = 100


@dataclass(frozen=True)
class SSDLiteSpec:
    """SSDLite on MobileNetV3 (paper §6.3): taps C4 / C5, four extra layers, depthwise predictors, ReLU6.

    ``extra_depths`` / ``extra_mid_depths`` are the output and 1x1-reduction widths of the extra
    layers (512, 256, 256, 128 and half of each at width 1.0). ``scale_extras`` says whether the
    width multiplier applies to them (TF OD API ``depth_multiplier``: ``max(int(d * w), min_depth)``)
    or not (torchvision's builder). The class count (background included) is the spec's ``num_classes``.
    """

    extra_depths: tuple[int, ...] = (512, 256, 256, 128)
    extra_mid_depths: tuple[int, ...] = (256, 128, 128, 64)
    scale_extras: bool = True
    min_depth: int = 16
    image_size: tuple[int, int] = (320, 320)  # (height, width) the preset trains and evaluates at
    anchors: AnchorSpec = field(default_factory=AnchorSpec)
    box_coder: BoxCoderSpec = field(default_factory=BoxCoderSpec)
    matcher: MatcherSpec = field(default_factory=MatcherSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    init_std: float = 0.03  # conv weights ~ N(0, init_std), biases 0
    init_truncated: bool = True  # backbone and extra layers truncated at 2 std (TF truncated_normal_initializer)
    class_bias_init: float = -4.6  # class predictor bias (TF OD API class_prediction_bias_init)

    @property
    def num_feature_maps(self) -> int:
        """C4, C5 and one map per extra layer."""
        return 2 + len(self.extra_depths)


def anchor_box_specs(anchors: AnchorSpec) -> list[list[tuple[float, float]]]:
    """Per feature map, its (scale, aspect ratio) boxes in the order the predictors emit them."""
    n = anchors.num_layers
    scales = [anchors.min_scale + (anchors.max_scale - anchors.min_scale) * i / (n - 1) for i in range(n)] if n > 1 else [anchors.min_scale]
    scales.append(1.0)
    layers: list[list[tuple[float, float]]] = []
    for i in range(n):
        if i == 0 and anchors.reduce_boxes_in_lowest_layer:
            layers.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        boxes = [(scales[i], ar) for ar in anchors.aspect_ratios]
        if anchors.interpolated_scale_aspect_ratio > 0:
            extra = ((scales[i] * scales[i + 1]) ** 0.5, anchors.interpolated_scale_aspect_ratio)
            at = len(boxes)
            if anchors.layout is AnchorLayout.TORCHVISION:
                at = next((j + 1 for j, (_, ar) in enumerate(boxes) if ar == 1.0), 0)
            boxes.insert(at, extra)
        layers.append(boxes)
    return layers


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def validate_detection(d: SSDLiteSpec) -> None:
    """Raise ValueError naming the bad detection field, what was given and what is allowed."""
    _check(len(d.extra_depths) == len(d.extra_mid_depths), f"detection.extra_depths {list(d.extra_depths)} and extra_mid_depths {list(d.extra_mid_depths)} need the same length")
    _check(all(isinstance(v, int) and v >= 1 for v in (*d.extra_depths, *d.extra_mid_depths)), "detection extra-layer widths must be positive integers")
    _check(d.anchors.num_layers == d.num_feature_maps, f"detection.anchors.num_layers must be {d.num_feature_maps} (C4, C5 and {len(d.extra_depths)} extra layers), got {d.anchors.num_layers}")
    _check(0 < d.anchors.min_scale <= d.anchors.max_scale, f"detection.anchors: need 0 < min_scale <= max_scale, got {d.anchors.min_scale}, {d.anchors.max_scale}")
    _check(len(d.anchors.aspect_ratios) >= 1 and all(r > 0 for r in d.anchors.aspect_ratios), f"detection.anchors.aspect_ratios must be positive, got {list(d.anchors.aspect_ratios)}")
    _check(isinstance(d.anchors.layout, AnchorLayout), f"detection.anchors.layout must be one of {[e.value for e in AnchorLayout]}")
    _check(len(d.box_coder.weights) == 4 and all(w > 0 for w in d.box_coder.weights), f"detection.box_coder.weights must be 4 positive numbers, got {list(d.box_coder.weights)}")
    _check(len(d.image_size) == 2 and all(s >= 1 for s in d.image_size), f"detection.image_size must be (height, width), got {list(d.image_size)}")
    _check(0 < d.matcher.iou_threshold <= 1, f"detection.matcher.iou_threshold must be in (0, 1], got {d.matcher.iou_threshold}")
    p = d.postprocess
    _check(isinstance(p.score_function, ScoreFunction), f"detection.postprocess.score_function must be one of {[e.value for e in ScoreFunction]}")
    _check(0 < p.nms_iou <= 1, f"detection.postprocess.nms_iou must be in (0, 1], got {p.nms_iou}")
    _check(p.max_detections >= 1, f"detection.postprocess.max_detections must be >= 1, got {p.max_detections}")
    _check(isinstance(d.loss.classification, ClassificationLoss), f"detection.loss.classification must be one of {[e.value for e in ClassificationLoss]}")
    _check(d.init_std > 0, f"detection.init_std must be > 0, got {d.init_std}")
