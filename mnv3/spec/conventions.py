"""Convention presets that mirror each peer library exactly (docs/architecture.md, conventions table).

The converters of published weights rely on these: a checkpoint loads into an mnv3 model built
with the matching preset and produces the same logits.
"""

from __future__ import annotations

import math
from enum import Enum

from mnv3.spec import detection as det
from mnv3.spec import segmentation as seg
from mnv3.spec.types import AtrousStyle, Conventions, HeadScaling, Padding, StemScaling, WidthRounding


class Preset(str, Enum):
    """Named convention sets; PAPER (TF-slim, the official checkpoints) is the default."""

    PAPER = "paper"
    TORCHVISION = "torchvision"
    TIMM = "timm"
    KERAS = "keras"


PRESETS: dict[Preset, Conventions] = {
    # TF-slim as used for the paper: BN decay 0.99 (paper §6.1.1), eps 1e-3, SAME padding,
    # expansion = ratio of the rounded input, head hidden layer unscaled for multipliers <= 1
    # (this is what reproduces Table 9; docs/architecture.md). timm's tf_* ports share it.
    Preset.PAPER: Conventions(),
    # torchvision models/mobilenetv3.py: adjust_channels(c * width_mult) on every column,
    # BN eps 1e-3 momentum 0.01, symmetric padding, lastconv = 6 * rounded input.
    Preset.TORCHVISION: Conventions(
        bn_eps=1e-3,
        bn_momentum=0.01,
        padding=Padding.SYMMETRIC,
        stem_scaling=StemScaling.SCALED,
        head_scaling=HeadScaling.SCALED,
        expansion_rounding=WidthRounding.SCALE_NOMINAL,
        head_conv_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        atrous_style=AtrousStyle.TORCHVISION,
        reduced_tail_halves_hidden=True,
    ),
    # timm mobilenetv3_* (non-tf): PyTorch BN defaults, symmetric padding, stem fixed below
    # 0.75, head hidden layer never scaled, expansion from the rounded input (ir blocks).
    Preset.TIMM: Conventions(
        bn_eps=1e-5,
        bn_momentum=0.1,
        padding=Padding.SYMMETRIC,
        stem_scaling=StemScaling.SCALED_FROM_075,
        head_scaling=HeadScaling.FIXED,
        expansion_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        head_conv_rounding=WidthRounding.SCALE_NOMINAL,
        atrous_style=AtrousStyle.TF_SLIM,
    ),
    # keras.applications MobileNetV3: BN momentum 0.999 (PyTorch 0.001), eps 1e-3, TF padding
    # (ZeroPadding2D(correct_pad) equals SAME), stem fixed at 16, last_point_ch scaled only for
    # alpha > 1, last conv = _depth(6 * rounded input).
    Preset.KERAS: Conventions(
        bn_eps=1e-3,
        bn_momentum=0.001,
        padding=Padding.TF_SAME,
        stem_scaling=StemScaling.FIXED,
        head_scaling=HeadScaling.SCALED_ABOVE_ONE,
        expansion_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        head_conv_rounding=WidthRounding.RATIO_OF_ROUNDED_INPUT,
        atrous_style=AtrousStyle.TF_SLIM,
    ),
}


def get_preset(preset: Preset | str) -> Conventions:
    """The Conventions of a preset given by enum or name; unknown names list the valid ones."""
    try:
        return PRESETS[Preset(preset)]
    except ValueError:
        raise ValueError(f"unknown preset {preset!r}; choose one of {[p.value for p in Preset]}") from None


# SSDLite's BN: decay 0.97 (PyTorch momentum 0.03), eps 1e-3, in the backbone too: the TF OD API
# configs set it with override_base_feature_extractor_hyperparams, torchvision's builder passes
# BatchNorm2d(eps=0.001, momentum=0.03) to the backbone and head alike.
DETECTION_BN_MOMENTUM = 0.03

SSDLITE_PRESETS: dict[Preset, det.SSDLiteSpec] = {
    # TF OD API samples/configs/ssdlite_mobilenet_v3_{large,small}_320x320_coco.config and
    # models/ssd_mobilenet_v3_feature_extractor.py (paper §6.3): extra layers scaled by the depth
    # multiplier (min depth 16), ssd_anchor_generator (6 layers, 0.2-0.95, 3 boxes in the lowest),
    # faster_rcnn_box_coder 10/10/5/5, argmax matcher 0.5, sigmoid focal loss (0.75, 2) + smooth L1,
    # sigmoid scores, NMS IoU 0.6, 100 per class and in all; truncated-normal 0.03 features,
    # class bias -4.6.
    Preset.PAPER: det.SSDLiteSpec(),
    # torchvision models/detection/ssdlite.py (ssdlite320_mobilenet_v3_large) and ssd.py: extra
    # layers never scaled, DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95) (6 boxes everywhere, clipped),
    # BoxCoder((10, 10, 5, 5)) with its log(1000/16) clamp, SSDMatcher(0.5), cross-entropy with
    # 3:1 hard negatives + smooth L1, softmax scores, score_thresh 0.001, topk_candidates 300,
    # nms_thresh 0.55, detections_per_img 300; _normal_init N(0, 0.03), zero biases.
    Preset.TORCHVISION: det.SSDLiteSpec(
        scale_extras=False,
        anchors=det.AnchorSpec(
            aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1.0 / 3.0), reduce_boxes_in_lowest_layer=False, layout=det.AnchorLayout.TORCHVISION
        ),
        box_coder=det.BoxCoderSpec(scale_clamp=math.log(1000.0 / 16)),
        matcher=det.MatcherSpec(iou_threshold=0.5),
        loss=det.LossSpec(
            classification=det.ClassificationLoss.SOFTMAX_HARD_NEGATIVES, focal_alpha=None, focal_gamma=None, negative_ratio=3.0
        ),
        postprocess=det.PostprocessSpec(
            score_function=det.ScoreFunction.SOFTMAX,
            score_threshold=0.001,
            candidates_per_class=300,
            max_per_class=None,
            nms_iou=0.55,
            max_detections=300,
        ),
        init_truncated=False,
        class_bias_init=0.0,
    ),
}


def get_ssdlite_preset(preset: Preset | str) -> det.SSDLiteSpec:
    """The SSDLite head spec of a preset; only the paper (TF OD API) and torchvision ones exist."""
    p = Preset(preset)
    if p not in SSDLITE_PRESETS:
        raise ValueError(f"SSDLite has no {p.value!r} preset; choose one of {[q.value for q in SSDLITE_PRESETS]}")
    return SSDLITE_PRESETS[p]


SEGMENTATION_PRESETS: dict[Preset, seg.LRASPPSpec] = {
    # Paper §6.4, Figure 10: F = 128, avg pool 49x49 stride (16, 20) (drawn for 1024x2048), sigmoid gate,
    # 1/8 skip = the last 1/8 block's depthwise output (TF DeepLab models/research/deeplab
    # feature_extractor.py, mobilenet_v3_{large,small}_seg decoder end points), head BN decay 0.9997,
    # eps 1e-5 (TF DeepLab model.py). Table 7's R-ASPP rows are head=raspp, inter_channels=256.
    Preset.PAPER: seg.LRASPPSpec(),
    # torchvision models/segmentation/lraspp.py (lraspp_mobilenet_v3_large): AdaptiveAvgPool2d(1),
    # inter_channels 128, low = the block entering 1/8 (features[4], 40 channels), head
    # BatchNorm2d defaults (eps 1e-5, momentum 0.1).
    Preset.TORCHVISION: seg.LRASPPSpec(
        pool=seg.PoolMode.GLOBAL, low_level=seg.LowLevelFeature.FIRST_BLOCK_OUTPUT, bn_eps=1e-5, bn_momentum=0.1
    ),
}


def get_segmentation_preset(preset: Preset | str) -> seg.LRASPPSpec:
    """The segmentation head spec of a preset (§6.4); only the paper (TF DeepLab) and torchvision ones exist."""
    p = Preset(preset)
    if p not in SEGMENTATION_PRESETS:
        raise ValueError(f"LR-ASPP has no {p.value!r} preset; choose one of {[q.value for q in SEGMENTATION_PRESETS]}")
    return SEGMENTATION_PRESETS[p]
