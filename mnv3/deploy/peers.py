"""The peer libraries' version of an mnv3 network, for ``mnv3 bench --compare`` (same runtime, same run).

The peer is built from the spec's :class:`~mnv3.spec.types.Origin` (the registered variant and its
structural options), never from its name, and must be the same network: equal parameter count,
and under torchvision's conventions the very same tensors (copied bit-exactly). torchvision's
``mobilenet_v3_large`` / ``mobilenet_v3_small`` take ``width_mult``, ``reduced_tail`` and
``dilated``; minimalistic networks, the segmentation backbone's halved C4 expansion and other
input channel counts have no torchvision form. Under other conventions (the paper's TF "SAME"
padding, timm's BN eps) the peer keeps its own initialisation: latency does not depend on the values.
"""

from __future__ import annotations

from enum import Enum

from torch import nn

from mnv3.spec.types import Family
from mnv3.weights.convert.common import Library, numerics_match
from mnv3.weights.convert.torchvision import mnv3_to_torchvision


class Peer(str, Enum):
    """Libraries ``mnv3 bench --compare`` can measure side by side."""

    TORCHVISION = "torchvision"


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def torchvision_equivalent(model: nn.Module) -> tuple[nn.Module, str]:
    """(torchvision model in eval mode, its builder call as text) for an mnv3 model built from a registered variant."""
    import torchvision

    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("--compare needs an mnv3 model (built by create_model)")
    origin = spec.origin
    if origin is None:
        raise ValueError(f"{spec.name} was not built from a registered variant; --compare torchvision needs one of mnv3.list_models()")
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
    if problems:
        raise ValueError(f"torchvision has no equivalent of {spec.name}: it cannot express {', '.join(problems)}")
    kwargs = {
        "width_mult": origin.width,
        "reduced_tail": origin.reduced_tail,
        "dilated": origin.output_stride == 16,
        "num_classes": spec.num_classes,
    }
    builder = torchvision.models.mobilenet_v3_large if origin.family is Family.LARGE else torchvision.models.mobilenet_v3_small
    tv = builder(**kwargs)
    call = f"torchvision.models.{builder.__name__}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    if _params(tv) != _params(model):
        raise ValueError(
            f"{call} has {_params(tv):,} parameters, {spec.name} {_params(model):,}: not the same network (its width rounding "
            "or head differ under these conventions); compare a model built with --preset torchvision"
        )
    if numerics_match(spec, Library.TORCHVISION):
        tv.load_state_dict(mnv3_to_torchvision(model))  # torchvision's conventions: the very same network and values
    return tv.eval(), call


def peer_model(peer: Peer | str, model: nn.Module) -> tuple[nn.Module, str]:
    """The peer library's equivalent of ``model``."""
    peer = Peer(peer)
    if peer is Peer.TORCHVISION:
        return torchvision_equivalent(model)
    raise ValueError(f"unknown peer {peer!r}")
