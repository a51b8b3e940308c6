"""Weights: mnv3's safetensors format with metadata, converters from torchvision / timm / Keras
checkpoints (and back to torchvision), named published weights with hash-checked downloads, and
one resolver (:mod:`mnv3.weights.resolve`) that every entry point loads through."""

from mnv3.utils.preprocessing import IMAGENET, INCEPTION, Preprocessing
from mnv3.weights.convert import Library, mnv3_to_torchvision
from mnv3.weights.download import DownloadError, cache_dir, fetch
from mnv3.weights.io import WeightsMeta, read_weights, save_weights
from mnv3.weights.load import save_torchvision
from mnv3.weights.named import WEIGHTS, Checksum, HashAlgorithm, Metric, WeightsEntry, get_weights, list_weights
from mnv3.weights.resolve import (
    Resolved,
    SourceKind,
    convert_checkpoint,
    create_pretrained,
    load_model,
    load_weights_into,
    model_from_file,
    resolve,
)

__all__ = [
    "IMAGENET", "INCEPTION", "Preprocessing", "WeightsMeta", "model_from_file", "read_weights", "save_weights",
    "Library", "mnv3_to_torchvision", "DownloadError", "cache_dir", "fetch", "convert_checkpoint", "create_pretrained",
    "load_weights_into", "save_torchvision", "WEIGHTS", "Checksum", "HashAlgorithm", "Metric", "WeightsEntry",
    "get_weights", "list_weights", "Resolved", "SourceKind", "load_model", "resolve",
]
