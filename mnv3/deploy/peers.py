"""The peer libraries' version of an mnv3 network, for ``mnv3 bench --compare`` (same runtime, same run).

The peer is built from the spec's :class:`~mnv3.spec.types.Origin` (the registered variant and its
structural options), never from its name, and must be the same network: equal parameter count,
and under torchvision's conventions the very same tensors (copied bit-exactly). torchvision's
``mobilenet_v3_large`` / ``mobilenet_v3_small`` take ``width_mult``, ``reduced_tail`` and
``dilated``; minimalistic networks, the segmentation backbone's halved C4 expansion and other
input channel counts have no torchvision form. Under other conventions (the paper's TF "SAME"
padding, timm's BN eps) the peer keeps its own initialisation: latency does not depend on the values.

Detectors and segmenters are timed on their raw outputs: mnv3's SSDLite through
:class:`~mnv3.deploy.detection.RawDetector` against torchvision's ``ssdlite320_mobilenet_v3_large``
backbone + head (its transform, anchors and post-processing left out), mnv3's LR-ASPP logits against
torchvision's ``lraspp_mobilenet_v3_large``'s ``out``. Which builder applies is looked up by the
network's kind (:func:`network_kind`, from the spec), never from its name. torchvision's dense builders
take no backbone options (its LR-ASPP keeps the full tail and C4 expansion), so these peers may differ
in parameter count; ``mnv3 bench`` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch
from torch import nn

from mnv3.deploy.detection import RawDetector
from mnv3.spec.segmentation import SegmentationHead
from mnv3.spec.types import Family, ModelSpec
from mnv3.weights.convert.common import Library, numerics_match
from mnv3.weights.convert.torchvision import mnv3_to_torchvision


class Peer(str, Enum):
    """Libraries ``mnv3 bench --compare`` can measure side by side."""

    TORCHVISION = "torchvision"


class NetworkKind(str, Enum):
    """What an mnv3 network computes, read from its spec: it decides the peer builder and the outputs timed."""

    CLASSIFIER = "classifier"
    DETECTOR = "detector"
    SEGMENTER = "segmenter"


def network_kind(spec: ModelSpec) -> NetworkKind:
    """The kind of network ``spec`` builds: a detection head spec makes a detector, a segmentation one a segmenter."""
    if spec.detection is not None:
        return NetworkKind.DETECTOR
    if spec.segmentation is not None:
        return NetworkKind.SEGMENTER
    return NetworkKind.CLASSIFIER


def params(m: nn.Module) -> int:
    """Parameter count of a module (the peers' sameness check, and bench's note when they differ)."""
    return sum(p.numel() for p in m.parameters())


def timed_module(model: nn.Module) -> nn.Module:
    """What bench times of an mnv3 network: a detector up to its raw head outputs (the exported graph), else the model."""
    spec = getattr(model, "spec", None)
    if spec is not None and network_kind(spec) is NetworkKind.DETECTOR:
        return RawDetector(model).eval()
    return model


def _spec_of(model: nn.Module) -> ModelSpec:
    """The spec of an mnv3 network built from a registered variant (what the peers are built from)."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("--compare needs an mnv3 model (built by create_model)")
    if spec.origin is None:
        raise ValueError(
            f"{spec.name} was not built from a registered variant; --compare torchvision needs one of mnv3.list_models()"
        )
    return spec


def _refuse(spec: ModelSpec, problems: list[str]) -> None:
    """A one-line error naming what torchvision cannot express of ``spec``, when anything."""
    if problems:
        raise ValueError(f"torchvision has no equivalent of {spec.name}: it cannot express {', '.join(problems)}")


def _call_text(name: str, kwargs: dict[str, object]) -> str:
    """A builder call as text, e.g. ``torchvision.models.mobilenet_v3_large(width_mult=1.0)``."""
    return f"torchvision.models.{name}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


class TorchvisionRawSSD(nn.Module):
    """torchvision's SSD up to its raw head outputs: backbone + head, without its transform, anchors or post-processing."""

    def __init__(self, ssd: nn.Module) -> None:
        super().__init__()
        self.backbone = ssd.backbone
        self.head = ssd.head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bbox_regression (N, A, 4), cls_logits (N, A, C)), as :class:`~mnv3.deploy.detection.RawDetector` returns."""
        out = self.head(list(self.backbone(x).values()))
        return out["bbox_regression"], out["cls_logits"]


class OutOnly(nn.Module):
    """A torchvision segmentation model returning its ``out`` logits (N, C, H, W) only (no auxiliary output)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ``out`` logits at the input size."""
        return self.model(x)["out"]


def torchvision_detector(model: nn.Module) -> tuple[nn.Module, str]:
    """(torchvision's SSDLite320 up to its raw outputs, in eval mode; its builder call) for an mnv3 SSDLite detector."""
    import torchvision

    spec = _spec_of(model)
    origin = spec.origin
    assert origin is not None
    problems = []
    if origin.family is not Family.LARGE:
        problems.append(f"the {origin.family.value} family (ssdlite320_mobilenet_v3_large only)")
    if origin.minimal:
        problems.append("minimalistic networks")
    if not origin.reduced_tail:
        problems.append("a full tail (without a pretrained backbone it always halves the tail, paper Table 6)")
    if spec.in_chans != 3:
        problems.append(f"{spec.in_chans}-channel input")
    _refuse(spec, problems)
    kwargs: dict[str, object] = {"weights": None, "weights_backbone": None, "num_classes": spec.num_classes}
    if origin.width != 1.0:
        kwargs["width_mult"] = origin.width
    ssd = torchvision.models.detection.ssdlite320_mobilenet_v3_large(**kwargs)  # type: ignore[arg-type]
    return TorchvisionRawSSD(ssd).eval(), _call_text("detection.ssdlite320_mobilenet_v3_large", kwargs) + " backbone+head"


def torchvision_segmenter(model: nn.Module) -> tuple[nn.Module, str]:
    """(torchvision's LR-ASPP returning ``out`` only, in eval mode; its builder call) for an mnv3 LR-ASPP segmenter."""
    import torchvision

    spec = _spec_of(model)
    origin, seg = spec.origin, spec.segmentation
    assert origin is not None and seg is not None
    problems = []
    if seg.head is not SegmentationHead.LRASPP:
        problems.append(f"the {seg.head.value} head (LR-ASPP only)")
    if origin.family is not Family.LARGE or origin.width != 1.0:
        problems.append(f"the {origin.family.value} family at width {origin.width} (lraspp_mobilenet_v3_large only)")
    if origin.minimal:
        problems.append("minimalistic networks")
    if spec.in_chans != 3:
        problems.append(f"{spec.in_chans}-channel input")
    _refuse(spec, problems)
    kwargs: dict[str, object] = {"weights": None, "weights_backbone": None, "num_classes": spec.num_classes}
    tv = torchvision.models.segmentation.lraspp_mobilenet_v3_large(**kwargs)  # type: ignore[arg-type]
    return OutOnly(tv).eval(), _call_text("segmentation.lraspp_mobilenet_v3_large", kwargs) + "['out']"


def torchvision_equivalent(model: nn.Module) -> tuple[nn.Module, str]:
    """(torchvision model in eval mode, its builder call as text) for an mnv3 model built from a registered variant."""
    import torchvision

    spec = _spec_of(model)
    origin = spec.origin
    assert origin is not None
    problems = []
    if origin.family not in (Family.LARGE, Family.SMALL):
        problems.append(f"the {origin.family.value} family (it builds MobileNetV3 only)")
    if origin.minimal:
        problems.append("minimalistic networks")
    if origin.halve_first_expansion:
        problems.append("the segmentation backbone's halved C4 expansion")
    if spec.in_chans != 3:
        problems.append(f"{spec.in_chans}-channel input")
    if origin.output_stride not in (16, 32):
        problems.append(f"output stride {origin.output_stride}")
    _refuse(spec, problems)
    kwargs = {
        "width_mult": origin.width,
        "reduced_tail": origin.reduced_tail,
        "dilated": origin.output_stride == 16,
        "num_classes": spec.num_classes,
    }
    builder = torchvision.models.mobilenet_v3_large if origin.family is Family.LARGE else torchvision.models.mobilenet_v3_small
    tv = builder(**kwargs)
    call = _call_text(builder.__name__, kwargs)
    if params(tv) != params(model):
        raise ValueError(
            f"{call} has {params(tv):,} parameters, {spec.name} {params(model):,}: not the same network (its width rounding "
            "or head differ under these conventions); compare a model built with --preset torchvision"
        )
    if numerics_match(spec, Library.TORCHVISION):
        tv.load_state_dict(mnv3_to_torchvision(model))  # torchvision's conventions: the very same network and values
    return tv.eval(), call


PeerBuilder = Callable[[nn.Module], tuple[nn.Module, str]]

PEER_BUILDERS: dict[tuple[Peer, NetworkKind], PeerBuilder] = {
    (Peer.TORCHVISION, NetworkKind.CLASSIFIER): torchvision_equivalent,
    (Peer.TORCHVISION, NetworkKind.DETECTOR): torchvision_detector,
    (Peer.TORCHVISION, NetworkKind.SEGMENTER): torchvision_segmenter,
}


def peer_model(peer: Peer | str, model: nn.Module) -> tuple[nn.Module, str]:
    """The peer library's equivalent of ``model`` (what bench times of it: raw outputs for detectors), and its call as text."""
    peer = Peer(peer)
    kind = network_kind(_spec_of(model))
    builder = PEER_BUILDERS.get((peer, kind))
    if builder is None:
        raise ValueError(f"{peer.value} has no {kind.value} peer")
    return builder(model)
