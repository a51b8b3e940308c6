"""Fashion-MNIST from its IDX files: Debian's ``dataset-fashion-mnist``, a folder, or the canonical URLs.

Files are found in ``--data-dir``, then ``/usr/share/datasets/fashion-mnist`` (Debian), then
``~/.cache/mnv3/fashion-mnist``; ``download=True`` fetches the canonical files and checks their MD5.
Every file is checked against the MD5 of its uncompressed payload, so Debian's recompressed ``.gz``
files, the canonical ones and gunzipped copies are all accepted and nothing else is.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

NAME = "fashion-mnist"  # how recipes, commands and run folders name this dataset
CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Pixel statistics of the 60,000 training images in [0, 1] (computed from the IDX files).
MEAN = 0.2860
STD = 0.3530

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnv3" / "fashion-mnist"
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: its name, MD5 of the canonical .gz, MD5 of the uncompressed payload."""

    name: str
    gz_md5: str
    raw_md5: str
    count: int


FILES: dict[str, tuple[IdxFile, IdxFile]] = {
    "train": (
        IdxFile("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a", 60000),
        IdxFile("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9", 60000),
    ),
    "test": (
        IdxFile("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a", 10000),
        IdxFile("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965", 10000),
    ),
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX payload (magic 0x00 0x00 dtype ndim, big-endian sizes) into a uint8 array."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{source} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{source}: only unsigned-byte IDX files are supported (type code 0x{data[2]:02x})")
    ndim = data[3]
    if ndim == 0:
        raise ValueError(f"{source} is not an IDX array file (0 dimensions in its header)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source} is truncated (header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape)  # Python ints: a garbage header cannot overflow
    if len(data) != expected:
        raise ValueError(f"{source} is truncated or padded: {len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_payload(path: Path) -> bytes:
    """The file's bytes, gunzipped for ``.gz``; an unreadable, empty or damaged file is a ValueError naming it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror or e})") from None
    if not raw:
        raise ValueError(f"{path} is empty (0 bytes): an interrupted download or copy? Delete it and run again")
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:  # BadGzipFile, truncated stream, corrupt deflate data
            raise ValueError(f"{path} is not a readable gzip file ({e}); delete it and run again") from None
    return raw


def _find(directory: Path, f: IdxFile) -> Path | None:
    for name in (f.name + ".gz", f.name):
        if (directory / name).is_file():
            return directory / name
    return None


def search_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    """Where the files are looked for, in order."""
    dirs = [Path(data_dir)] if data_dir else []
    return dirs + [DEBIAN_DIR, CACHE_DIR]


def download(target: Path, base_url: str = BASE_URL) -> None:
    """Fetch the four canonical .gz files into ``target``, checking each MD5 before it is kept."""
    from mnv3.utils.atomic import atomic_write_bytes

    for pair in FILES.values():
        for f in pair:
            if _find(target, f):
                continue
            url = base_url + f.name + ".gz"
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    data = r.read()
            except OSError as e:
                raise FileNotFoundError(
                    f"could not download {url} ({e}); install Debian's dataset-fashion-mnist or put the IDX files in --data-dir"
                ) from None
            if _md5(data) != f.gz_md5:
                raise ValueError(f"{url}: MD5 {_md5(data)} does not match the published {f.gz_md5}; nothing was saved")
            atomic_write_bytes(target / (f.name + ".gz"), data)


def load_split(split: str, data_dir: str | os.PathLike | None = None, download_missing: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of the ``train`` or ``test`` split, MD5-checked."""
    if split not in FILES:
        raise ValueError(f"unknown Fashion-MNIST split {split!r}; choose 'train' or 'test'")
    dirs = search_dirs(data_dir)
    found = next((d for d in dirs if all(_find(d, f) for f in FILES[split])), None)
    if found is None and download_missing:
        target = Path(data_dir) if data_dir else CACHE_DIR
        download(target)
        found = target
    if found is None:
        raise FileNotFoundError(
            f"Fashion-MNIST {split} files not found in {[str(d) for d in dirs]}; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist), pass --data-dir with the IDX files, or add --download"
        )
    arrays = []
    for f in FILES[split]:
        path = _find(found, f)
        assert path is not None
        payload = _read_payload(path)
        arr = parse_idx(payload, str(path))  # a bad header or size says more than an MD5 mismatch
        if arr.shape[0] != f.count:
            raise ValueError(f"{path} holds {arr.shape[0]} items, expected {f.count}; it is not the published Fashion-MNIST file")
        if _md5(payload) != f.raw_md5:
            raise ValueError(f"{path} does not match the published Fashion-MNIST file (MD5 of its content differs); replace it")
        arrays.append(arr)
    images, labels = arrays
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
