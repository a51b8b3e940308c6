"""mnv3: the whole "Searching for MobileNetV3" system (Howard et al., ICCV 2019) in PyTorch."""

from mnv3.api import create_model
from mnv3.models import MobileNetV3, build_spec, list_models
from mnv3.spec import ModelSpec, Preset, load_spec, save_spec

__version__ = "0.1.0"

__all__ = ["MobileNetV3", "ModelSpec", "Preset", "build_spec", "create_model", "list_models", "load_spec", "save_spec", "__version__"]
