"""Weights: mnv3's safetensors format with metadata, converters from torchvision / timm / Keras
checkpoints (and back to torchvision), named published weights with hash-checked downloads."""

from mnv3.utils.preprocessing import IMAGENET, INCEPTION, Preprocessing
from mnv3.weights.convert import Library, mnv3_to_torchvision
from mnv3.weights.download import DownloadError, cache_dir, fetch
from mnv3.weights.io import WeightsMeta, model_from_file, read_weights, save_weights
from mnv3.weights.load import convert_checkpoint, create_pretrained, load_weights_into, save_torchvision
from mnv3.weights.named import WEIGHTS, Checksum, HashAlgorithm, Metric, WeightsEntry, get_weights, list_weights

__all__ = [
    "IMAGENET", "INCEPTION", "Preprocessing", "WeightsMeta", "model_from_file", "read_weights", "save_weights",
    "Library", "mnv3_to_torchvision", "DownloadError", "cache_dir", "fetch", "convert_checkpoint", "create_pretrained",
    "load_weights_into", "save_torchvision", "WEIGHTS", "Checksum", "HashAlgorithm", "Metric", "WeightsEntry",
    "get_weights", "list_weights",
]
