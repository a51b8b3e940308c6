"""Fashion-MNIST IDX loading: the real files, MD5 checks of content, and the download check."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from mnv3.data import fashion_mnist as fm


@pytest.fixture(scope="module")
def test_split():
    try:
        return fm.load_split("test")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")


def test_real_test_split_is_the_published_one(test_split):
    x, y = test_split
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [1000] * 10  # the published split is balanced
    assert fm.CLASSES[int(y[0])] == "Ankle boot"  # first test image of the published file


def test_training_statistics_match_the_constants():
    try:
        x, y = fm.load_split("train")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    assert x.shape == (60000, 28, 28) and torch.bincount(y).tolist() == [6000] * 10
    xf = x.float() / 255
    assert abs(float(xf.mean()) - fm.MEAN) < 5e-4 and abs(float(xf.std()) - fm.STD) < 5e-4


def test_uncompressed_copy_in_data_dir_is_accepted_and_a_tampered_one_is_not(tmp_path: Path, test_split):
    src = next(d for d in fm.search_dirs(None) if (d / "t10k-labels-idx1-ubyte.gz").is_file())
    for f in fm.FILES["test"]:
        (tmp_path / f.name).write_bytes(gzip.decompress((src / (f.name + ".gz")).read_bytes()))
    x, y = fm.load_split("test", tmp_path)
    assert torch.equal(y, test_split[1])
    raw = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
    raw[100] = (raw[100] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="does not match the published"):
        fm.load_split("test", tmp_path)


def test_idx_parser_rejects_truncated_and_foreign_files():
    good = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    assert fm.parse_idx(good).tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="truncated"):
        fm.parse_idx(good[:-1])
    with pytest.raises(ValueError, match="not an IDX"):
        fm.parse_idx(b"\x89PNG\r\n")


def test_download_checks_md5_before_keeping_a_file(tmp_path: Path, test_split):
    # Debian's .gz files are recompressed, so their MD5 is not the published one: a download of
    # them must be refused and leave nothing behind.
    src = next(d for d in fm.search_dirs(None) if (d / "t10k-labels-idx1-ubyte.gz").is_file())
    mirror, target = tmp_path / "mirror", tmp_path / "target"
    shutil.copytree(src, mirror)
    with pytest.raises(ValueError, match="does not match the published"):
        fm.download(target, base_url=mirror.as_uri() + "/")
    assert not target.exists() or not any(target.iterdir())


def test_missing_files_error_names_the_fixes(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nope")
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        fm.load_split("test", tmp_path / "empty")
