"""Networks built from specs, and the registry of named variants."""

from mnv3.models.extractor import FeatureExtractor
from mnv3.models.features import FeatureInfo, TapKind, expansion_names, feature_info, pyramid_names
from mnv3.models.mobilenetv3 import MobileNetV3
from mnv3.models.registry import Family, Variant, build_spec, create_model, get_variant, list_models, register

__all__ = [
    "FeatureInfo", "TapKind", "feature_info", "pyramid_names", "expansion_names", "MobileNetV3", "FeatureExtractor",
    "Family", "Variant", "build_spec", "create_model", "get_variant", "list_models", "register",
]
