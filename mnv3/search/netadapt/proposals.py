"""NetAdapt proposals (paper §4.2): shrink one expansion layer, or the bottleneck of a residual-coupled group.

Blocks joined by residual connections add their outputs, so they must share one output width: a
*group* is a producer (the first block of a stage, or the stem when block 1 adds to it) and every
stride-1 block after it whose input and output widths match. A proposal's cut is the smallest one
(in steps of ``step`` channels) that lowers the LUT-predicted latency by at least ``delta_ms``;
widths that would change the network's structure (create or remove a residual, or remove an
expansion layer) are skipped, so every proposal keeps its seed's groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mnv3.spec.types import BlockSpec, ModelSpec

# (has an expansion layer, has a residual) per block: what no proposal may change (§4.2)
Structure = tuple[tuple[bool, bool], ...]
Predictor = Callable[[ModelSpec], float]


class ProposalKind(str, Enum):
    """The two proposal types MobileNetV3 reuses from NetAdapt for V2 (§4.2)."""

    EXPANSION = "expansion"  # one block's expansion width
    BOTTLENECK = "bottleneck"  # the output width of every block of a residual group


@dataclass(frozen=True)
class Group:
    """Blocks (1-based, as in Tables 1-2) that share one output width through residuals; ``stem``: the stem produces it."""

    blocks: tuple[int, ...]
    stem: bool = False

    @property
    def label(self) -> str:
        """E.g. ``blocks 4-6`` or ``stem+block 1``."""
        b = self.blocks
        core = f"block {b[0]}" if len(b) == 1 else f"blocks {b[0]}-{b[-1]}"
        return f"stem+{core}" if self.stem else core


def input_widths(spec: ModelSpec) -> list[int]:
    """Each block's input width (the stem's output, then the previous block's)."""
    return [spec.stem.out, *(b.out for b in spec.blocks[:-1])]


def structure(spec: ModelSpec) -> Structure:
    """Per block: (has an expansion layer, adds a residual), as mnv3's InvertedResidual decides them (§5)."""
    return tuple((b.exp != i, b.stride == 1 and i == b.out) for b, i in zip(spec.blocks, input_widths(spec), strict=True))


def residual_groups(spec: ModelSpec) -> list[Group]:
    """The residual-coupled groups of ``spec`` in forward order, derived from its widths and strides (§4.2)."""
    groups: list[list[int]] = []
    stem_in_first = False
    for i, (_, residual) in enumerate(structure(spec), start=1):
        if residual and i == 1:
            stem_in_first = True
            groups.append([1])
        elif residual:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [Group(tuple(g), stem=stem_in_first and k == 0) for k, g in enumerate(groups)]


def check_structure(spec: ModelSpec, reference: Structure, what: str = "the seed") -> None:
    """Raise a one-line ValueError when ``spec``'s residual groups or expansion layers differ from ``reference``'s."""
    got = structure(spec)
    if len(got) != len(reference):
        raise ValueError(f"{spec.name} has {len(got)} blocks, {what} has {len(reference)}; residual groups cannot be matched")
    ins = input_widths(spec)
    for i, ((exp_now, res_now), (exp_ref, res_ref)) in enumerate(zip(got, reference, strict=True), start=1):
        b = spec.blocks[i - 1]
        if res_now != res_ref:
            lost = "lost its" if res_ref else "gained a"
            raise ValueError(
                f"inconsistent residual groups in {spec.name}: block {i} {lost} residual connection (input {ins[i - 1]}, output {b.out}, "
                f"stride {b.stride}); blocks joined by residuals in {what} must share their output width (paper §4.2)"
            )
        if exp_now != exp_ref:
            raise ValueError(f"{spec.name}: block {i} {'gained' if exp_now else 'lost'} its expansion layer (exp {b.exp}, input {ins[i - 1]}) against {what}")


def registered_structure(spec: ModelSpec) -> Structure | None:
    """The residual structure of the registered network ``spec`` was built from (``spec.origin``), or None."""
    o = spec.origin
    if o is None:
        return None
    from mnv3.models.registry import build_spec

    seed = build_spec(
        o.model, num_classes=max(spec.num_classes, 1), in_chans=spec.in_chans, width=o.width, minimal=o.minimal,
        reduced_tail=o.reduced_tail, halve_first_expansion=o.halve_first_expansion, output_stride=o.output_stride,
    )  # fmt: skip
    return structure(seed)


def with_expansion(spec: ModelSpec, block: int, width: int) -> ModelSpec:
    """``spec`` with block ``block``'s (1-based) expansion width set to ``width``."""
    blocks = list(spec.blocks)
    blocks[block - 1] = dataclasses.replace(blocks[block - 1], exp=width)
    return spec.replace(blocks=tuple(blocks))


def with_group_width(spec: ModelSpec, group: Group, width: int) -> ModelSpec:
    """``spec`` with the group's shared output width set to ``width``; a block fed by the group without an expansion layer follows it."""
    ins = input_widths(spec)
    fed = {g + 1 for g in group.blocks} | ({1} if group.stem else set())  # 1-based blocks whose input is the group's width
    blocks: list[BlockSpec] = []
    for i, b in enumerate(spec.blocks, start=1):
        nb = b
        if i in group.blocks:
            nb = dataclasses.replace(nb, out=width)
        if i in fed and b.exp == ins[i - 1]:  # depthwise-only: its channels are its input's
            nb = dataclasses.replace(nb, exp=width)
        blocks.append(nb)
    stem = dataclasses.replace(spec.stem, out=width) if group.stem else spec.stem
    return spec.replace(stem=stem, blocks=tuple(blocks))


def group_width(spec: ModelSpec, group: Group) -> int:
    """The group's current shared width."""
    return spec.blocks[group.blocks[0] - 1].out


def smaller_widths(width: int, step: int, minimum: int) -> list[int]:
    """Multiples of ``step`` below ``width``, largest first, down to ``minimum`` (make_divisible-style steps, §4.2)."""
    top = (width - 1) // step * step
    return [w for w in range(top, minimum - 1, -step) if w >= max(minimum, 1)]


@dataclass(frozen=True)
class Proposal:
    """One candidate network: which layer was shrunk, from and to what width, and its predicted latency (§4.2)."""

    kind: ProposalKind
    blocks: tuple[int, ...]  # the blocks whose width changed (1-based)
    stem: bool
    old_width: int
    new_width: int
    spec: ModelSpec
    latency_ms: float

    @property
    def label(self) -> str:
        """E.g. ``expansion of block 4 96->88`` or ``bottleneck of blocks 4-6 40->32``."""
        where = Group(self.blocks, self.stem).label
        return f"{self.kind.value} of {where} {self.old_width}->{self.new_width}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "blocks": list(self.blocks), "stem": self.stem, "old_width": self.old_width,
            "new_width": self.new_width, "latency_ms": self.latency_ms, "label": self.label,
        }  # fmt: skip


@dataclass(frozen=True)
class Dropped:
    """A layer with no proposal this iteration: no allowed width cuts ``delta`` (every width at its minimum)."""

    kind: ProposalKind
    blocks: tuple[int, ...]
    width: int
    best_cut_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "blocks": list(self.blocks), "width": self.width, "best_cut_ms": self.best_cut_ms}


def _first_cut(
    spec: ModelSpec, widths: Sequence[int], build: Callable[[int], ModelSpec], reference: Structure, latency: Predictor, now_ms: float, delta_ms: float
) -> tuple[ModelSpec, int, float] | float:
    """The first (largest) width whose network keeps ``reference`` and predicts at least ``delta_ms`` faster; else the best cut seen."""
    best = 0.0
    for w in widths:
        cand = build(w)
        if structure(cand) != reference:
            continue
        ms = latency(cand)
        if now_ms - ms >= delta_ms:
            return cand, w, ms
        best = max(best, now_ms - ms)
    return best


def make_proposals(
    spec: ModelSpec,
    latency: Predictor,
    delta_ms: float,
    *,
    reference: Structure,
    step: int = 8,
    min_width: int = 8,
    blocks: Sequence[int] | None = None,
) -> tuple[list[Proposal], list[Dropped]]:
    """One proposal per expansion layer and per residual group (§4.2), each the smallest cut predicted to save ``delta_ms``.

    ``latency(spec)`` predicts a network's latency (the LUT); ``reference`` is the structure every
    proposal keeps; ``blocks`` (1-based) limits the search to some blocks (a group is searched when
    all of its blocks are allowed). Returns the proposals and the dropped layers.
    """
    if step < 1 or min_width < 1:
        raise ValueError(f"step and min_width must be >= 1, got {step} and {min_width}")
    allowed = set(range(1, len(spec.blocks) + 1)) if blocks is None else set(blocks)
    now = latency(spec)
    out: list[Proposal] = []
    dropped: list[Dropped] = []
    for i, b in enumerate(spec.blocks, start=1):
        if i not in allowed or not reference[i - 1][0]:
            continue  # a block without an expansion layer has no expansion to shrink
        found = _first_cut(spec, smaller_widths(b.exp, step, min_width), lambda w, i=i: with_expansion(spec, i, w), reference, latency, now, delta_ms)
        if isinstance(found, float):
            dropped.append(Dropped(ProposalKind.EXPANSION, (i,), b.exp, found))
        else:
            cand, w, ms = found
            out.append(Proposal(ProposalKind.EXPANSION, (i,), False, b.exp, w, cand, ms))
    for g in residual_groups(spec):
        if not set(g.blocks) <= allowed:
            continue
        width = group_width(spec, g)
        found = _first_cut(spec, smaller_widths(width, step, min_width), lambda w, g=g: with_group_width(spec, g, w), reference, latency, now, delta_ms)
        if isinstance(found, float):
            dropped.append(Dropped(ProposalKind.BOTTLENECK, g.blocks, width, found))
        else:
            cand, w, ms = found
            out.append(Proposal(ProposalKind.BOTTLENECK, g.blocks, g.stem, width, w, cand, ms))
    return out, dropped


def floor_spec(spec: ModelSpec, reference: Structure, *, step: int = 8, min_width: int = 8, blocks: Sequence[int] | None = None) -> ModelSpec:
    """Every searchable width at its smallest allowed value (structure kept): the fastest network the search can reach."""
    allowed = set(range(1, len(spec.blocks) + 1)) if blocks is None else set(blocks)
    for g in residual_groups(spec):
        if set(g.blocks) <= allowed:
            for w in reversed(smaller_widths(group_width(spec, g), step, min_width)):
                cand = with_group_width(spec, g, w)
                if structure(cand) == reference:
                    spec = cand
                    break
    for i in sorted(allowed):
        if reference[i - 1][0]:
            for w in reversed(smaller_widths(spec.blocks[i - 1].exp, step, min_width)):
                cand = with_expansion(spec, i, w)
                if structure(cand) == reference:
                    spec = cand
                    break
    return spec
