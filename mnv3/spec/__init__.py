"""The typed MobileNetV3 architecture spec, its tables, transforms, presets and serialisation."""

from mnv3.spec.conventions import (
    PRESETS,
    SEGMENTATION_PRESETS,
    SSDLITE_PRESETS,
    Preset,
    get_preset,
    get_segmentation_preset,
    get_ssdlite_preset,
)
from mnv3.spec.detection import (
    AnchorLayout,
    AnchorSpec,
    BoxCoderSpec,
    ClassificationLoss,
    LossSpec,
    MatcherSpec,
    PostprocessSpec,
    ScoreFunction,
    SSDLiteSpec,
    anchor_box_specs,
)
from mnv3.spec.segmentation import Gate, LowLevelFeature, LRASPPSpec, PoolMode, SegmentationHead, pool_geometry
from mnv3.spec.serialize import (
    load_spec,
    save_spec,
    spec_from_dict,
    spec_from_json,
    spec_from_yaml,
    spec_to_dict,
    spec_to_json,
    spec_to_yaml,
)
from mnv3.spec.tables import LARGE, SMALL
from mnv3.spec.transforms import (
    last_stage_start,
    make_divisible,
    minimalistic,
    reduce_tail,
    scale_width,
    squeeze_width,
    with_classes,
    with_output_stride,
)
from mnv3.spec.types import (
    Activation,
    AtrousStyle,
    BlockSpec,
    Conventions,
    HeadScaling,
    HeadSpec,
    ModelSpec,
    Padding,
    StemScaling,
    StemSpec,
    WidthRounding,
    validate,
)

__all__ = [
    "Activation", "AtrousStyle", "BlockSpec", "Conventions", "HeadScaling", "HeadSpec", "ModelSpec",
    "Padding", "StemScaling", "StemSpec", "WidthRounding", "validate", "LARGE", "SMALL", "PRESETS",
    "Preset", "get_preset", "make_divisible", "minimalistic", "reduce_tail", "scale_width",
    "squeeze_width", "with_classes", "with_output_stride", "last_stage_start", "load_spec", "save_spec",
    "spec_from_dict", "spec_from_json", "spec_from_yaml", "spec_to_dict", "spec_to_json", "spec_to_yaml",
    "SSDLITE_PRESETS", "get_ssdlite_preset", "AnchorLayout", "AnchorSpec", "BoxCoderSpec", "ClassificationLoss", "LossSpec",
    "MatcherSpec", "PostprocessSpec", "ScoreFunction", "SSDLiteSpec", "anchor_box_specs",
    "SEGMENTATION_PRESETS", "get_segmentation_preset", "Gate", "LowLevelFeature", "LRASPPSpec", "PoolMode", "SegmentationHead",
    "pool_geometry",
]
