"""Data: Fashion-MNIST IDX files, ImageFolder layouts that skip bad files, and v2 transforms."""

from mnv3.data.datasets import TensorImageDataset, TransformedDataset
from mnv3.data.folder import FolderDataset, FolderIndex, scan_folder
from mnv3.data.images import load_image, to_mode

__all__ = ["FolderDataset", "FolderIndex", "TensorImageDataset", "TransformedDataset", "load_image", "scan_folder", "to_mode"]
