"""Networks built from specs, and the registry of named variants."""

from mnv3.models.extractor import FeatureExtractor
from mnv3.models.features import FeatureInfo, TapKind, expansion_names, feature_info, pyramid_names
from mnv3.models.lraspp import LRASPP
from mnv3.models.mobilenetv3 import MobileNetV3
from mnv3.models.registry import (
    Family,
    Network,
    Variant,
    build_network,
    build_spec,
    create_model,
    get_variant,
    list_models,
    register,
)
from mnv3.models.ssdlite import SSDLite

__all__ = [
    "FeatureInfo", "TapKind", "feature_info", "pyramid_names", "expansion_names", "MobileNetV3", "FeatureExtractor",
    "Family", "Network", "Variant", "SSDLite", "LRASPP", "build_network", "build_spec", "create_model", "get_variant", "list_models", "register",
]
