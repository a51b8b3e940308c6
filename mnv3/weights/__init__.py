"""Weights: mnv3's safetensors format with metadata (converters and named weights build on it)."""

from mnv3.weights.io import IMAGENET, INCEPTION, Preprocessing, WeightsMeta, model_from_file, read_weights, save_weights

__all__ = ["IMAGENET", "INCEPTION", "Preprocessing", "WeightsMeta", "model_from_file", "read_weights", "save_weights"]
