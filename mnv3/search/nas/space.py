"""MnasNet's factorized hierarchical search space with MobileNetV3's choices (paper §4.1; MnasNet, arXiv 1807.11626, §4.1).

A seed network (V3-Large, V3-Small or MnasNet-A1) is cut into *stages*: a block whose stride is 2
or whose output width differs from its input starts one (the residual groups). Every stage takes six
decisions, shared by all its blocks (MnasNet's "factorized" space): the number of blocks relative
to the seed's, an output-width multiplier, an expansion ratio (a number, or ``seed``: each block's own
ratio in the seed), the depthwise kernel, SE on / off and the activation. The stem and the head stay
the seed's. A choice sequence decodes to a concrete :class:`~mnv3.spec.types.ModelSpec` through spec
transforms (the one builder builds it); the seed's own choices decode to the seed, exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mnv3.spec.transforms import make_divisible
from mnv3.spec.types import Activation, BlockSpec, ModelSpec

SEED = "seed"  # the expansion choice "keep each block's ratio from the seed"
DECISIONS: tuple[str, ...] = ("depth", "width", "expansion", "kernel", "se", "act")
Choice = int | float | str | bool


def _fail(msg: str) -> None:
    raise ValueError(msg)


@dataclass(frozen=True)
class SpaceOptions:
    """The values each per-stage decision may take (MnasNet §4.1's per-block choices; V3 adds h-swish, §5.2)."""

    depths: tuple[int, ...] = (-1, 0, 1)  # blocks relative to the seed's stage
    widths: tuple[float, ...] = (0.75, 1.0, 1.25)  # output-width multipliers of the seed's stage
    expansions: tuple[float | str, ...] = (3, 6, SEED)  # expansion ratio of the block input; "seed": the seed's ratios
    kernels: tuple[int, ...] = (3, 5)
    se: tuple[bool, ...] = (False, True)
    acts: tuple[Activation, ...] = (Activation.RELU, Activation.HSWISH)

    def __post_init__(self) -> None:
        for name in ("depths", "widths", "expansions", "kernels", "se", "acts"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values:
                _fail(f"space option {name} is empty: give at least one value")
            if len(set(values)) != len(values):
                _fail(f"space option {name} repeats a value: {list(values)}")
        for d in self.depths:
            if not isinstance(d, int) or isinstance(d, bool):
                _fail(f"space option depths takes whole block counts relative to the seed (e.g. -1,0,1), got {d!r}")
        for w in self.widths:
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w <= 0:
                _fail(f"space option widths takes positive multipliers (e.g. 0.75,1.0,1.25), got {w!r}")
        for e in self.expansions:
            if e != SEED and (not isinstance(e, (int, float)) or isinstance(e, bool) or e < 1):
                _fail(f"space option expansions takes ratios >= 1 or '{SEED}' (e.g. 3,6,seed), got {e!r}")
        for k in self.kernels:
            if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
                _fail(f"space option kernels takes odd positive sizes (e.g. 3,5), got {k!r}")
        for s in self.se:
            if not isinstance(s, bool):
                _fail(f"space option se takes on / off, got {s!r}")
        for a in self.acts:
            if not isinstance(a, Activation):
                _fail(f"space option acts takes {[x.value for x in Activation]}, got {a!r}")

    def values(self, decision: str) -> tuple[Choice, ...]:
        """The options of one decision kind (one of :data:`DECISIONS`)."""
        return {"depth": self.depths, "width": self.widths, "expansion": self.expansions, "kernel": self.kernels,
                "se": self.se, "act": self.acts}[decision]  # fmt: skip

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "depths": list(self.depths), "widths": list(self.widths), "expansions": list(self.expansions), "kernels": list(self.kernels),
            "se": list(self.se), "acts": [a.value for a in self.acts],
        }  # fmt: skip


# Named spaces: MobileNetV3's (§4.1 with h-swish, §5.2) and MnasNet's own (ReLU only, arXiv 1807.11626 §4.1).
SPACES: dict[str, SpaceOptions] = {
    "mobilenetv3": SpaceOptions(),
    "mnasnet": SpaceOptions(acts=(Activation.RELU,)),
}

_OPTION_NAMES = ("depths", "widths", "expansions", "kernels", "se", "acts")


def parse_option(name: str, text: str) -> tuple[Any, ...]:
    """One space option from its command-line text (``-1,0,1``, ``3,6,seed``, ``on,off``, ``relu,hswish``); malformed: one-line error."""
    if name not in _OPTION_NAMES:
        _fail(f"unknown space option {name!r}; expected one of {list(_OPTION_NAMES)}")
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        _fail(f"space option {name} is empty: give comma-separated values, e.g. {','.join(map(str, SPACES['mobilenetv3'].to_dict()[name]))}")
    out: list[Any] = []
    for p in parts:
        try:
            if name in ("depths", "kernels"):
                out.append(int(p))
            elif name == "widths":
                out.append(float(p))
            elif name == "expansions":
                out.append(SEED if p == SEED else float(p) if "." in p else int(p))
            elif name == "se":
                if p.lower() not in ("on", "off", "true", "false"):
                    raise ValueError
                out.append(p.lower() in ("on", "true"))
            else:
                out.append(Activation(p.lower()))
        except ValueError:
            _fail(f"space option {name}: cannot read {p!r} in {text!r}")
    return tuple(out)


def space_options(space: str, **given: str | None) -> SpaceOptions:
    """A named space (``mobilenetv3`` / ``mnasnet``) with some options replaced from command-line text."""
    if space not in SPACES:
        _fail(f"unknown search space {space!r}; expected one of {sorted(SPACES)}")
    changes = {k: parse_option(k, v) for k, v in given.items() if v is not None}
    return dataclasses.replace(SPACES[space], **changes)


@dataclass(frozen=True)
class Stage:
    """A run of the seed's blocks that one set of per-stage decisions controls (MnasNet's 'block', §4.1)."""

    start: int  # index of its first block in the seed
    blocks: tuple[BlockSpec, ...]
    in_width: int  # the seed's input width of the stage

    @property
    def ratios(self) -> tuple[float, ...]:
        """The seed's expansion ratio of each block (expansion / block input width)."""
        ins = [self.in_width] + [b.out for b in self.blocks[:-1]]
        return tuple(b.exp / i for b, i in zip(self.blocks, ins, strict=True))


def seed_stages(seed: ModelSpec) -> tuple[Stage, ...]:
    """The seed's stages: a new one starts at each block with stride 2 or a width change (its residual groups)."""
    stages: list[list[BlockSpec]] = []
    starts: list[int] = []
    ins: list[int] = []
    in_w = seed.stem.out
    for i, b in enumerate(seed.blocks):
        if not stages or b.stride != 1 or b.out != in_w or b.dilation != stages[-1][-1].dilation:
            stages.append([])
            starts.append(i)
            ins.append(in_w)
        stages[-1].append(b)
        in_w = b.out
    return tuple(Stage(s, tuple(bs), w) for s, bs, w in zip(starts, stages, ins, strict=True))


@dataclass(frozen=True)
class Decision:
    """One step of a choice sequence: which stage, which kind (:data:`DECISIONS`), its options."""

    stage: int
    kind: str
    options: tuple[Choice, ...]


class SearchSpace:
    """The factorized hierarchical space around a seed (§4.1): decisions, decoding to specs, encoding specs back."""

    def __init__(self, seed: ModelSpec, options: SpaceOptions | None = None, name: str = "mobilenetv3") -> None:
        if seed.detection is not None or seed.segmentation is not None:
            _fail("the NAS space is built around a classifier seed (a MobileNetV3 / MnasNet spec)")
        self.seed, self.options, self.name = seed, options or SPACES[name], name
        self.stages = seed_stages(seed)
        for st in self.stages:
            if len({(b.kernel, b.se, b.act) for b in st.blocks}) != 1:
                _fail(f"seed {seed.name}: the blocks of stage {st.start + 1}-{st.start + len(st.blocks)} differ in kernel / SE / activation")
        self.decisions: tuple[Decision, ...] = tuple(
            Decision(i, kind, self.options.values(kind)) for i in range(len(self.stages)) for kind in DECISIONS
        )

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def sizes(self) -> tuple[int, ...]:
        """How many options each decision has."""
        return tuple(len(d.options) for d in self.decisions)

    def size(self) -> int:
        """The number of choice sequences (points, some possibly equal as specs)."""
        n = 1
        for s in self.sizes:
            n *= s
        return n

    # ---- decoding

    def _stage_blocks(self, st: Stage, in_w: int, c: dict[str, Choice]) -> tuple[BlockSpec, ...]:
        d = self.seed.conventions.divisor
        n = max(1, len(st.blocks) + int(c["depth"]))  # type: ignore[arg-type]  # a stage keeps at least one block
        out = make_divisible(st.blocks[0].out * float(c["width"]), d)  # type: ignore[arg-type]
        ratios = st.ratios
        blocks = []
        for j in range(n):
            tmpl = st.blocks[min(j, len(st.blocks) - 1)]  # extra blocks repeat the stage's last one
            block_in = in_w if j == 0 else out
            seed_in = st.in_width if j == 0 else st.blocks[min(j, len(st.blocks)) - 1].out
            if c["expansion"] == SEED and j < len(st.blocks) and block_in == seed_in:
                exp = tmpl.exp  # unchanged input: the seed's own expansion width, exactly
            else:
                ratio = ratios[min(j, len(ratios) - 1)] if c["expansion"] == SEED else float(c["expansion"])  # type: ignore[arg-type]
                exp = block_in if ratio == 1 else make_divisible(block_in * ratio, d)
            blocks.append(
                dataclasses.replace(
                    tmpl, kernel=int(c["kernel"]), exp=exp, out=out, se=bool(c["se"]), act=Activation(c["act"]),  # type: ignore[arg-type]
                    stride=st.blocks[0].stride if j == 0 else 1,
                )  # fmt: skip
            )
        return tuple(blocks)

    def _per_stage(self, choices: Sequence[int]) -> list[dict[str, Choice]]:
        if len(choices) != len(self.decisions):
            _fail(f"a choice sequence of this space has {len(self.decisions)} entries, got {len(choices)}")
        out: list[dict[str, Choice]] = [{} for _ in self.stages]
        for dec, k in zip(self.decisions, choices, strict=True):
            if not (isinstance(k, int) and 0 <= k < len(dec.options)):
                _fail(f"choice {k!r} for stage {dec.stage + 1} {dec.kind} is out of range 0..{len(dec.options) - 1}")
            out[dec.stage][dec.kind] = dec.options[k]
        return out

    def decode(self, choices: Sequence[int]) -> ModelSpec:
        """The spec of a choice sequence (indices into each decision's options); the seed's own choices give the seed."""
        blocks: list[BlockSpec] = []
        in_w = self.seed.stem.out
        for st, c in zip(self.stages, self._per_stage(choices), strict=True):
            bs = self._stage_blocks(st, in_w, c)
            blocks += bs
            in_w = bs[-1].out
        if tuple(blocks) == self.seed.blocks:
            return self.seed
        # named by its blocks, so choice sequences that give the same network (aliases) give the same spec
        rows = [[b.kernel, b.exp, b.out, b.se, b.act.value, b.stride, b.dilation] for b in blocks]
        return self.seed.replace(name=f"{self.seed.name}+nas-{digest(rows)}", blocks=tuple(blocks), origin=None)

    def describe(self, choices: Sequence[int]) -> list[dict[str, Any]]:
        """Readable per-stage choices: ``[{"depth": 0, "width": 1.0, "expansion": "seed", "kernel": 5, "se": True, "act": "hswish"}, ...]``."""
        return [{k: (v.value if isinstance(v, Activation) else v) for k, v in c.items()} for c in self._per_stage(choices)]

    # ---- encoding

    def encode(self, spec: ModelSpec) -> list[int]:
        """A choice sequence that decodes to ``spec``'s blocks; ValueError when ``spec`` is not a point of this space."""
        if (spec.stem, spec.head, spec.conventions) != (self.seed.stem, self.seed.head, self.seed.conventions):
            _fail(f"{spec.name} is not a point of the space around {self.seed.name}: its stem, head or conventions differ")
        per_kind = [self.options.values(k) for k in DECISIONS]
        # the seed's neutral values first (depth 0, width 1, its own expansion), so aliases encode canonically
        neutral = {"depth": lambda v: abs(v), "width": lambda v: abs(v - 1), "expansion": lambda v: v != SEED}
        orders = [sorted(range(len(v)), key=lambda j, k=k, v=v: neutral[k](v[j]) if k in neutral else j) for k, v in zip(DECISIONS, per_kind, strict=True)]

        def search(si: int, pos: int, in_w: int) -> list[int] | None:  # depth-first, backtracking over stage boundaries
            if si == len(self.stages):
                return [] if pos == len(spec.blocks) else None
            st = self.stages[si]
            for combo in itertools.product(*orders):
                c = {k: per_kind[i][j] for i, (k, j) in enumerate(zip(DECISIONS, combo, strict=True))}
                bs = self._stage_blocks(st, in_w, c)
                if tuple(spec.blocks[pos : pos + len(bs)]) == bs:
                    rest = search(si + 1, pos + len(bs), bs[-1].out)
                    if rest is not None:
                        return list(combo) + rest
            return None

        found = search(0, 0, self.seed.stem.out)
        if found is None:
            _fail(f"{spec.name} is not a point of the space around {self.seed.name}: no choice sequence gives its blocks")
        return found  # type: ignore[return-value]

    def seed_choices(self) -> list[int]:
        """The seed's own choice sequence."""
        return self.encode(self.seed)

    def cheapest(self) -> list[int]:
        """The point with every choice at its cheapest: fewest blocks, narrowest, smallest expansion, smallest kernel, no SE, ReLU."""
        out: list[int] = []
        in_w = self.seed.stem.out
        for st in self.stages:
            o = self.options
            c: dict[str, Choice] = {
                "depth": min(o.depths), "width": min(o.widths), "kernel": min(o.kernels), "se": False if False in o.se else True,
                "act": Activation.RELU if Activation.RELU in o.acts else o.acts[0],
            }  # fmt: skip
            c["expansion"] = min(o.expansions, key=lambda e: sum(b.exp for b in self._stage_blocks(st, in_w, {**c, "expansion": e})))
            in_w = self._stage_blocks(st, in_w, c)[-1].out
            out += [o.values(k).index(c[k]) for k in DECISIONS]
        return out


def digest(data: Any) -> str:
    """A short stable name for JSON-able data, e.g. a network's block rows (8 hex digits)."""
    return hashlib.sha1(json.dumps(data).encode()).hexdigest()[:8]
