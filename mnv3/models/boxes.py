"""The Faster R-CNN box coder that SSD uses (paper §6.3): xyxy boxes <-> (dx, dy, dw, dh) against anchors, scaled
by ``weights`` (wx, wy, ww, wh), as TF's faster_rcnn_box_coder and torchvision's ``BoxCoder`` define it."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Regression targets of xyxy ``boxes`` against their anchors: centre offsets in anchor sizes, log size ratios."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    return torch.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)], dim=1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights: Sequence[float], scale_clamp: float | None = None) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`; ``scale_clamp`` caps dw, dh before exp (torchvision: log(1000 / 16); TF: none)."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    dw, dh = deltas[..., 2] / ww, deltas[..., 3] / wh
    if scale_clamp is not None:
        dw, dh = dw.clamp(max=scale_clamp), dh.clamp(max=scale_clamp)
    cx, cy = deltas[..., 0] / wx * aw + ax, deltas[..., 1] / wy * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
