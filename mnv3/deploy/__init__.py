"""Shipping MobileNetV3: export to ONNX / ExecuTorch / LiteRT, int8 quantization, latency measurement.

Runtimes are optional extras (``pip install 'mnv3[export]'``, ``'mnv3[executorch]'``,
``'mnv3[litert]'``); importing this package needs none of them.
"""

from mnv3.deploy.export import ExportReport, ParityReport, build_artifact, export_model, load_predictor
from mnv3.deploy.prepare import ExpectedOps, export_ready, fold_batchnorm_, fold_se_gate_
from mnv3.deploy.quantize import QATModel, convert_qat, prepare_qat
from mnv3.deploy.runtimes import Format, MissingRuntimeError, Runtime, available, require

__all__ = [
    "ExpectedOps",
    "ExportReport",
    "Format",
    "MissingRuntimeError",
    "ParityReport",
    "QATModel",
    "Runtime",
    "available",
    "build_artifact",
    "convert_qat",
    "export_model",
    "export_ready",
    "fold_batchnorm_",
    "fold_se_gate_",
    "load_predictor",
    "prepare_qat",
    "require",
]
