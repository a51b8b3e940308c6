"""Typed architecture spec: the single source of truth for every MobileNetV3 network.

A :class:`ModelSpec` holds concrete widths (no multiplier left to apply), so a network
rebuilt from a serialised spec is identical to the original (paper Tables 1-2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from mnv3.spec.detection import SSDLiteSpec, validate_detection
from mnv3.spec.segmentation import LRASPPSpec, validate_segmentation


class Activation(str, Enum):
    """Nonlinearity of a layer: the paper's RE (ReLU) and HS (h-swish), §5.2."""

    RELU = "relu"
    HSWISH = "hswish"


class Padding(str, Enum):
    """How convolutions pad: PyTorch-style symmetric, or TensorFlow 'SAME' (asymmetric on stride 2)."""

    SYMMETRIC = "symmetric"
    TF_SAME = "tf_same"


class StemScaling(str, Enum):
    """What the width multiplier does to the 16-filter stem (docs/architecture.md, conventions table)."""

    SCALED = "scaled"  # torchvision, TF-slim
    FIXED = "fixed"  # Keras
    SCALED_FROM_075 = "scaled_from_075"  # timm: scaled only when the multiplier is >= 0.75


class HeadScaling(str, Enum):
    """What the width multiplier does to the 1280 / 1024 hidden head layer (TF-slim's mobilenet_v3.py; docs/architecture.md)."""

    SCALED = "scaled"  # torchvision
    FIXED = "fixed"  # timm
    SCALED_ABOVE_ONE = "scaled_above_one"  # Keras, TF-slim finegrain mode, paper Table 9


class WidthRounding(str, Enum):
    """How an expansion width is derived under a multiplier (TF-slim's mobilenet_v3.py; docs/architecture.md).

    RATIO_OF_ROUNDED_INPUT is TF-slim's official rule: the row's exp/in ratio applied to the
    already-rounded input width. SCALE_NOMINAL rounds exp * multiplier directly (torchvision).
    """

    RATIO_OF_ROUNDED_INPUT = "ratio_of_rounded_input"
    SCALE_NOMINAL = "scale_nominal"


class AtrousStyle(str, Enum):
    """Where dilation starts when a stride is removed to keep a smaller output stride.

    TF_SLIM: the block whose stride is removed keeps rate 1, later blocks get the higher rate
    (``mobilenet_base``). TORCHVISION: the block whose stride is removed is dilated as well.
    """

    TF_SLIM = "tf_slim"
    TORCHVISION = "torchvision"


@dataclass(frozen=True)
class Conventions:
    """Everything that differs between MobileNetV3 libraries but is not in the paper's tables.

    Presets mirroring torchvision, timm, Keras and the paper (TF-slim) live in
    :mod:`mnv3.spec.conventions`; converters rely on them being exact.
    """

    bn_eps: float = 1e-3
    bn_momentum: float = 0.01  # PyTorch meaning: 1 - TF decay (paper: decay 0.99)
    padding: Padding = Padding.TF_SAME
    stem_scaling: StemScaling = StemScaling.SCALED
    head_scaling: HeadScaling = HeadScaling.SCALED_ABOVE_ONE
    expansion_rounding: WidthRounding = WidthRounding.RATIO_OF_ROUNDED_INPUT
    head_conv_rounding: WidthRounding = WidthRounding.SCALE_NOMINAL
    atrous_style: AtrousStyle = AtrousStyle.TF_SLIM
    reduced_tail_halves_hidden: bool = False  # torchvision's reduced_tail also halves the 1280 / 1024 layer
    divisor: int = 8  # every width is rounded to a multiple of this (make_divisible)
    se_ratio: float = 0.25  # SE squeeze = make_divisible(exp * se_ratio, divisor), paper §5.3


@dataclass(frozen=True)
class StemSpec:
    """The first full convolution (paper Tables 1-2, row 'conv2d')."""

    out: int
    act: Activation
    kernel: int = 3
    stride: int = 2


@dataclass(frozen=True)
class BlockSpec:
    """One bottleneck row of the paper's tables: kernel, exp size, #out, SE, NL, s (+ dilation)."""

    kernel: int
    exp: int
    out: int
    se: bool
    act: Activation
    stride: int
    dilation: int = 1


@dataclass(frozen=True)
class HeadSpec:
    """The efficient last stage (paper §5.1): 1x1 conv at 7x7, pool, 1x1 hidden layer, classifier."""

    conv_out: int  # 960 (Large) / 576 (Small), runs before pooling
    hidden: int  # 1280 (Large) / 1024 (Small), runs after pooling, no BN; 0: none (MnasNet's head: the classifier reads the pooled conv_out)
    act: Activation
    dropout: float = 0.2


class Family(str, Enum):
    """Which of the paper's two tables a network starts from (Table 1: Large, Table 2: Small)."""

    LARGE = "large"
    SMALL = "small"
    MNASNET = "mnasnet"  # MnasNet-A1 (MnasNet paper, arXiv 1807.11626, Fig. 7): the NAS seed family of §4.1


@dataclass(frozen=True)
class Origin:
    """The registered variant a spec was built from, with the structural options it was given.

    Lets a spec say what it is without relying on its name: ``mnv3 bench --compare`` builds the
    peer library's network from it, and the spec's name spells the non-default options out.
    """

    model: str  # the registered name, e.g. "mobilenetv3_large_100"
    family: Family
    width: float = 1.0
    minimal: bool = False
    reduced_tail: bool = False
    halve_first_expansion: bool = False
    output_stride: int = 32


@dataclass(frozen=True)
class ModelSpec:
    """A complete MobileNetV3 network: stem, bottlenecks, head, conventions and I/O sizes."""

    name: str
    stem: StemSpec
    blocks: tuple[BlockSpec, ...]
    head: HeadSpec
    conventions: Conventions = field(default_factory=Conventions)
    num_classes: int = 1000
    in_chans: int = 3
    origin: Origin | None = None  # set by the registry; None for hand-written specs
    detection: SSDLiteSpec | None = None  # an SSDLite detector on this backbone (paper §6.3); head.hidden / dropout unused then
    segmentation: LRASPPSpec | None = None  # an LR-ASPP / R-ASPP segmenter on this backbone (paper §6.4); head.hidden / dropout unused then

    def replace(self, **changes: object) -> ModelSpec:
        """A copy with some fields changed (dataclasses.replace, validated)."""
        new = replace(self, **changes)
        validate(new)
        return new

    @property
    def total_stride(self) -> int:
        """Product of all strides: the input must be at least this large."""
        s = self.stem.stride
        for b in self.blocks:
            s *= b.stride
        return s


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def validate(spec: ModelSpec) -> None:
    """Raise ValueError naming the bad field, what was given and what is allowed."""
    _check(isinstance(spec.name, str) and spec.name != "", f"spec name must be a non-empty string, got {spec.name!r}")
    _check(spec.in_chans >= 1, f"in_chans must be >= 1, got {spec.in_chans}")
    _check(spec.num_classes >= 0, f"num_classes must be >= 0 (0 = no classifier), got {spec.num_classes}")
    c = spec.conventions
    _check(c.bn_eps > 0, f"conventions.bn_eps must be > 0, got {c.bn_eps}")
    _check(0 <= c.bn_momentum <= 1, f"conventions.bn_momentum must be in [0, 1], got {c.bn_momentum}")
    _check(c.divisor >= 1, f"conventions.divisor must be >= 1, got {c.divisor}")
    _check(0 < c.se_ratio <= 1, f"conventions.se_ratio must be in (0, 1], got {c.se_ratio}")
    for fname, enum in (
        ("padding", Padding),
        ("stem_scaling", StemScaling),
        ("head_scaling", HeadScaling),
        ("expansion_rounding", WidthRounding),
        ("head_conv_rounding", WidthRounding),
        ("atrous_style", AtrousStyle),
    ):
        _check(isinstance(getattr(c, fname), enum), f"conventions.{fname} must be one of {[e.value for e in enum]}, got {getattr(c, fname)!r}")
    _check(isinstance(spec.stem.act, Activation), f"stem.act must be one of {[a.value for a in Activation]}, got {spec.stem.act!r}")
    _check(spec.stem.out >= 1, f"stem.out must be a positive width, got {spec.stem.out}")
    _check(spec.stem.stride in (1, 2), f"stem.stride must be 1 or 2, got {spec.stem.stride}")
    _check(spec.stem.kernel >= 1 and spec.stem.kernel % 2 == 1, f"stem.kernel must be odd and positive, got {spec.stem.kernel}")
    _check(len(spec.blocks) >= 1, "a spec needs at least one bottleneck block")
    for i, b in enumerate(spec.blocks, start=1):
        where = f"block {i}"
        _check(b.kernel >= 1 and b.kernel % 2 == 1, f"{where}: kernel must be odd and positive (3 or 5 in the paper), got {b.kernel}")
        _check(b.exp >= 1, f"{where}: exp (expansion width) must be positive, got {b.exp}")
        _check(b.out >= 1, f"{where}: out (output width) must be positive, got {b.out}")
        _check(b.stride in (1, 2), f"{where}: stride must be 1 or 2, got {b.stride}")
        _check(b.dilation >= 1, f"{where}: dilation must be >= 1, got {b.dilation}")
        _check(isinstance(b.act, Activation), f"{where}: act must be one of {[a.value for a in Activation]}, got {b.act!r}")
        _check(isinstance(b.se, bool), f"{where}: se must be true or false, got {b.se!r}")
    h = spec.head
    _check(h.conv_out >= 1, f"head.conv_out must be a positive width, got {h.conv_out}")
    _check(h.hidden >= 0, f"head.hidden must be a width >= 0 (0: no hidden layer), got {h.hidden}")
    _check(isinstance(h.act, Activation), f"head.act must be one of {[a.value for a in Activation]}, got {h.act!r}")
    _check(0 <= h.dropout < 1, f"head.dropout must be in [0, 1), got {h.dropout}")
    if spec.detection is not None:
        _check(isinstance(spec.detection, SSDLiteSpec), f"detection must be an SSDLite spec, got {type(spec.detection).__name__}")
        validate_detection(spec.detection)
        _check(spec.num_classes >= 1, f"a detector needs num_classes >= 1 (background included), got {spec.num_classes}")
    if spec.segmentation is not None:
        _check(spec.detection is None, "a spec has a detection head or a segmentation head, not both")
        _check(isinstance(spec.segmentation, LRASPPSpec), f"segmentation must be an LR-ASPP spec, got {type(spec.segmentation).__name__}")
        validate_segmentation(spec.segmentation)
        _check(spec.num_classes >= 1, f"a segmenter needs num_classes >= 1, got {spec.num_classes}")
