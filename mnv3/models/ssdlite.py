"""SSDLite on MobileNetV3 (paper §6.3), built from a :class:`ModelSpec` whose ``detection`` is set.

C4 is the expansion output of the block that leaves stride 16 (block 13 of Large, 9 of Small),
taken before its stride-2 depthwise conv; C5 is the 960 / 576 head conv (480 / 288 with the
reduced tail). Four extra layers (1x1 at half depth, 3x3 depthwise stride 2, 1x1; ReLU6) follow,
and every one of the six maps gets a box and a class predictor (3x3 depthwise + BN + ReLU6, then
a 1x1 conv), as in the TF Object Detection API's SSDLite and torchvision's
``torchvision/models/detection/ssdlite.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import ops

from mnv3.blocks import ConvBnAct
from mnv3.models.boxes import decode_boxes
from mnv3.models.features import expansion_names, feature_info
from mnv3.models.mobilenetv3 import SpecNetwork, backbone_layers
from mnv3.spec.detection import AnchorLayout, ScoreFunction, SSDLiteSpec, anchor_box_specs
from mnv3.spec.types import Conventions, ModelSpec, validate


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, conventions: Conventions, *, stride: int = 1, groups: int = 1) -> ConvBnAct:
    """Conv + BN + ReLU6, SSDLite's activation (paper §6.3), padded by the spec's conventions."""
    layer = ConvBnAct(in_ch, out_ch, kernel, conventions, stride=stride, groups=groups, act=None)
    layer.act = nn.ReLU6(inplace=True)
    return layer


class ExtraLayer(nn.Module):
    """One SSDLite extra layer: 1x1 to ``mid``, 3x3 depthwise stride 2, 1x1 to ``out`` (TF OD API multi_resolution_feature_maps)."""

    def __init__(self, in_ch: int, mid: int, out: int, conventions: Conventions) -> None:
        super().__init__()
        self.reduce = conv_bn_relu6(in_ch, mid, 1, conventions)
        self.dw = conv_bn_relu6(mid, mid, 3, conventions, stride=2, groups=mid)
        self.expand = conv_bn_relu6(mid, out, 1, conventions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.dw(self.reduce(x)))


class Predictor(nn.Module):
    """A box or class predictor of one feature map: 3x3 depthwise + BN + ReLU6, then a 1x1 conv with bias (§6.3)."""

    def __init__(self, in_ch: int, out_ch: int, conventions: Conventions) -> None:
        super().__init__()
        self.dw = conv_bn_relu6(in_ch, in_ch, 3, conventions, groups=in_ch)
        self.pred = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pred(self.dw(x))


def _flatten(maps: list[torch.Tensor], heads: nn.ModuleList, k: int) -> torch.Tensor:
    """Predictor outputs (N, A*k, H, W) of every map as (N, sum H*W*A, k): location-major, anchors inner."""
    out = []
    for x, head in zip(maps, heads, strict=True):
        y = head(x)
        n, _, h, w = y.shape
        out.append(y.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k))
    return torch.cat(out, dim=1)


class SSDLite(SpecNetwork):
    """MobileNetV3 + SSDLite (paper §6.3): ``forward`` gives the raw head outputs, ``postprocess`` the detections.

    ``model(x)`` returns ``{"bbox_regression": (N, A, 4), "cls_logits": (N, A, C), "anchors": (A, 4)}`` (C
    counts the background, class 0; anchors xyxy in pixels of x's size); :meth:`anchors` gives the A anchors of an image size in pixels (xyxy) and
    :meth:`postprocess` decodes and runs per-class NMS into torchvision-style
    ``{"boxes", "scores", "labels"}`` dicts, with the settings of ``spec.detection``.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        validate(spec)
        if spec.detection is None:
            raise ValueError(f"{spec.name} has no detection head spec; build classifiers with MobileNetV3")
        det: SSDLiteSpec = spec.detection
        taps = expansion_names(spec)
        if 16 not in taps or any(b.dilation != 1 for b in spec.blocks):
            raise ValueError(f"{spec.name}: SSDLite needs an undilated backbone with an expansion layer leaving stride 16 (C4)")
        self.spec = spec
        c = spec.conventions
        self.stem, self.blocks, self.head_conv = backbone_layers(spec)
        self.c4_name = taps[16]
        self.c4_index = int(self.c4_name[len("block") :].split(".")[0])  # 1-based, as in the paper's tables
        self.c4_channels = spec.blocks[self.c4_index - 1].exp
        self.out_channels = [self.c4_channels, spec.head.conv_out, *det.extra_depths]
        ins = self.out_channels[1:-1]
        self.extra = nn.ModuleList(
            ExtraLayer(i, m, o, c) for i, m, o in zip(ins, det.extra_mid_depths, det.extra_depths, strict=True)
        )
        self.box_specs = anchor_box_specs(det.anchors)
        self.num_anchors = [len(b) for b in self.box_specs]
        self.box_head = nn.ModuleList(Predictor(ch, 4 * a, c) for ch, a in zip(self.out_channels, self.num_anchors, strict=True))
        self.cls_head = nn.ModuleList(
            Predictor(ch, spec.num_classes * a, c) for ch, a in zip(self.out_channels, self.num_anchors, strict=True)
        )
        self.feature_info = [f for f in feature_info(spec) if f.name in (self.c4_name, "head_conv")]
        self._init_weights()

    def _init_weights(self) -> None:
        """Conv weights ~ N(0, init_std) (truncated at 2 std in backbone and extras when the preset says so), zero biases, unit BN (§6.3 presets)."""
        det = self.spec.detection
        assert det is not None
        std = det.init_std
        predictors = {id(m) for head in (self.box_head, self.cls_head) for m in head.modules()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if det.init_truncated and id(m) not in predictors:
                    nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
                else:
                    nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in self.cls_head:
            nn.init.constant_(p.pred.bias, det.class_bias_init)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six SSDLite maps: C4 (expansion), C5 (head conv) and the four extra layers."""
        if not torch.jit.is_scripting():
            self.check_input(x)
        x = self.stem(x)
        maps: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks, start=1):
            if i == self.c4_index:
                x, e = block.forward_with_expansion(x)
                maps.append(e)
            else:
                x = block(x)
        x = self.head_conv(x)
        maps.append(x)
        for layer in self.extra:
            x = layer(x)
            maps.append(x)
        return maps

    def forward_head(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(bbox_regression (N, A, 4), cls_logits (N, A, C)) of the six maps: the raw outputs an exported graph returns.

        No anchors here: they depend only on the input size, and computing them in a traced graph would put float64
        arithmetic into it (which int8 quantizers reject).
        """
        return _flatten(maps, self.box_head, 4), _flatten(maps, self.cls_head, self.spec.num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs and the anchors they refer to (what the detection task's loss matches against)."""
        boxes, logits = self.forward_head(self.forward_features(x))
        return {"bbox_regression": boxes, "cls_logits": logits, "anchors": self._cached_anchors(tuple(x.shape[-2:]), x.dtype, x.device)}

    def _cached_anchors(self, image_size: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (image_size, dtype, device)
        cache = self.__dict__.setdefault("_anchor_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = self.anchors(image_size, dtype=dtype, device=device)
        return cache[key]

    def feature_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H, W) of the six maps for an input size: every stride-2 layer gives ceil(n / 2) (symmetric or SAME padding)."""
        strides = [self.spec.stem.stride] + [b.stride for b in self.spec.blocks]
        before_c4 = strides[: self.c4_index]  # stem and the blocks before the C4 block
        counts = [sum(s == 2 for s in before_c4), sum(s == 2 for s in strides)]
        counts += [counts[-1] + k for k in range(1, len(self.extra) + 1)]
        sizes = []
        for n in counts:
            h, w = image_size
            for _ in range(n):
                h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        return sizes

    def anchors(self, image_size: tuple[int, int], *, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
        """The (A, 4) anchors of an input of ``image_size`` (H, W), xyxy in pixels, in the predictors' order (§6.3)."""
        det = self.spec.detection
        assert det is not None
        img_h, img_w = image_size
        tf_layout = det.anchors.layout is AnchorLayout.TF_OD_API
        # TF OD API: base anchor square in pixels on the shorter side; torchvision: relative to each side, clipped
        base_h, base_w = (min(image_size) / img_h, min(image_size) / img_w) if tf_layout else (1.0, 1.0)
        out = []
        for (fh, fw), boxes in zip(self.feature_sizes(image_size), self.box_specs, strict=True):
            wh = torch.tensor([[s * math.sqrt(ar) * base_w, s / math.sqrt(ar) * base_h] for s, ar in boxes], dtype=torch.float64)
            if not tf_layout:
                wh = wh.clamp(0, 1)
            cy = (torch.arange(fh, dtype=torch.float64) + 0.5) / fh
            cx = (torch.arange(fw, dtype=torch.float64) + 0.5) / fw
            gy, gx = torch.meshgrid(cy, cx, indexing="ij")
            centers = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)[:, None, :].expand(-1, len(boxes), 2)
            half = wh[None] / 2
            out.append(torch.cat([centers - half, centers + half], dim=-1).reshape(-1, 4))
        scale = torch.tensor([img_w, img_h, img_w, img_h], dtype=torch.float64)
        return (torch.cat(out) * scale).to(dtype=dtype, device=device)

    def decode_boxes(self, rel_codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Box regression (A, 4) = (dx, dy, dw, dh) on xyxy anchors -> xyxy boxes (the preset's box coder)."""
        det = self.spec.detection
        assert det is not None
        return decode_boxes(rel_codes, anchors, det.box_coder.weights, det.box_coder.scale_clamp)

    @torch.no_grad()
    def postprocess(
        self, raw: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]], input_size: tuple[int, int] | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image ``{"boxes", "scores", "labels"}``: decode, clip to the image, per-class NMS (``torchvision.ops.batched_nms``).

        ``image_sizes`` are the (H, W) of the images in the batch; ``input_size`` the size of the
        input tensor (default: the largest image size). Class 0 is the background and never reported.
        """
        det = self.spec.detection
        assert det is not None
        p = det.postprocess
        regression, logits = raw["bbox_regression"], raw["cls_logits"]
        if input_size is None:
            input_size = (max(s[0] for s in image_sizes), max(s[1] for s in image_sizes))
        anchors = self.anchors(input_size, dtype=regression.dtype, device=regression.device)
        if anchors.shape[0] != regression.shape[1]:
            raise ValueError(f"the outputs hold {regression.shape[1]} boxes per image, but a {input_size} input has {anchors.shape[0]} anchors; pass input_size")
        if len(image_sizes) != regression.shape[0]:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {regression.shape[0]}")
        scores_all = F.softmax(logits, dim=-1) if p.score_function is ScoreFunction.SOFTMAX else torch.sigmoid(logits)
        results = []
        for rel, scores, size in zip(regression, scores_all, image_sizes, strict=True):
            boxes = ops.clip_boxes_to_image(self.decode_boxes(rel, anchors), size)
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(1, scores.shape[-1]):
                score = scores[:, label]
                keep = score > p.score_threshold
                score, box = score[keep], boxes[keep]
                if p.candidates_per_class is not None:
                    score, idx = score.topk(min(p.candidates_per_class, score.numel()))
                    box = box[idx]
                if p.max_per_class is not None:  # NMS per class now, keeping its best max_per_class (TF OD API)
                    idx = _nms_first(box, score, p.nms_iou, p.max_per_class)
                    score, box = score[idx], box[idx]
                kept_boxes.append(box)
                kept_scores.append(score)
                kept_labels.append(torch.full_like(score, label, dtype=torch.int64))
            box, score, label = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            if p.max_per_class is None:
                keep = ops.batched_nms(box, score, label, p.nms_iou)  # torchvision SSD.postprocess_detections
            else:
                keep = torch.argsort(score, descending=True)
            keep = keep[: p.max_detections]
            results.append({"boxes": box[keep], "scores": score[keep], "labels": label[keep]})
        return results


def _nms_first(boxes: torch.Tensor, scores: torch.Tensor, iou: float, k: int) -> torch.Tensor:
    """The first ``k`` boxes greedy NMS keeps, in score order (``torchvision.ops.nms`` on a growing best-scored prefix).

    Greedy NMS decides each box from the higher-scored ones only, so once a prefix yields ``k``
    survivors they are the first ``k`` of the whole set: exact, and far cheaper at TF OD API's
    1e-8 score threshold than suppressing every candidate.
    """
    order = torch.argsort(scores, descending=True)
    n = order.numel()
    m = min(n, 4 * k)
    while True:
        keep = ops.nms(boxes[order[:m]], scores[order[:m]], iou)
        if keep.numel() >= k or m == n:
            return order[:m][keep[:k]]
        m = min(n, 4 * m)
