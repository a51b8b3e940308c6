"""The peer libraries' version of an mnv3 network, for ``mnv3 bench --compare`` (same runtime, same run).

torchvision's ``mobilenet_v3_large`` / ``mobilenet_v3_small`` take ``width_mult``,
``reduced_tail`` and ``dilated``; minimalistic networks, the segmentation backbone's halved C4
expansion and other input channel counts have no torchvision form. When the mnv3 model uses
torchvision's conventions its weights are copied over (bit-exact), otherwise the peer keeps its own
initialisation (latency does not depend on the values).
"""

from __future__ import annotations

from enum import Enum

from torch import nn


class Peer(str, Enum):
    """Libraries ``mnv3 bench --compare`` can measure side by side."""

    TORCHVISION = "torchvision"


def torchvision_equivalent(model: nn.Module) -> tuple[nn.Module, str]:
    """(torchvision model in eval mode, its builder call as text) for an mnv3 model built from a registered name."""
    import torchvision

    from mnv3.models.registry import Family, get_variant

    spec = getattr(model, "spec", None)
    if spec is None:
        raise ValueError("--compare needs an mnv3 model (built by create_model)")
    try:
        variant = get_variant(spec.name)
    except ValueError:
        raise ValueError(
            f"{spec.name} is not a registered variant; --compare torchvision needs one of mnv3.list_models()"
        ) from None
    problems = []
    if variant.minimal:
        problems.append("minimalistic networks")
    if variant.halve_first_expansion:
        problems.append("the segmentation backbone's halved C4 expansion")
    if spec.in_chans != 3:
        problems.append(f"{spec.in_chans}-channel input")
    if problems:
        raise ValueError(f"torchvision has no equivalent of {spec.name}: it cannot express {', '.join(problems)}")
    kwargs = {
        "width_mult": variant.width,
        "reduced_tail": variant.reduced_tail,
        "dilated": variant.output_stride == 16,
        "num_classes": spec.num_classes,
    }
    builder = torchvision.models.mobilenet_v3_large if variant.family is Family.LARGE else torchvision.models.mobilenet_v3_small
    tv = builder(**kwargs)
    try:
        from mnv3.weights.convert.torchvision import mnv3_to_torchvision

        tv.load_state_dict(mnv3_to_torchvision(model))
    except (ValueError, RuntimeError, KeyError):
        pass  # other conventions: the peer keeps its own random init; latency does not depend on values
    call = f"torchvision.models.{builder.__name__}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    return tv.eval(), call


def peer_model(peer: Peer | str, model: nn.Module) -> tuple[nn.Module, str]:
    """The peer library's equivalent of ``model``."""
    peer = Peer(peer)
    if peer is Peer.TORCHVISION:
        return torchvision_equivalent(model)
    raise ValueError(f"unknown peer {peer!r}")
