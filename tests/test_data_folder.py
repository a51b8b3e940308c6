"""ImageFolder data: every image mode converts, bad files are counted and skipped (or listed with strict)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnv3.data.folder import FolderDataset, scan_folder
from mnv3.data.images import load_image


def _write_mixed_folder(root: Path) -> dict[str, Path]:
    """Two classes of valid images in many modes, plus four bad files in class 'b'."""
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    rng = np.random.default_rng(0)
    paths = {}
    rgb = Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), "RGB")
    rgb.save(paths.setdefault("jpeg", a / "rgb.jpg"), quality=90)
    rgb.convert("L").save(paths.setdefault("gray", a / "gray.png"))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(paths.setdefault("rgba", a / "rgba.png"))
    rgb.convert("CMYK").save(paths.setdefault("cmyk", b / "cmyk.jpg"))
    i16 = np.array([[0, 257 * 128], [65535, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(i16).save(paths.setdefault("i16", b / "sixteen.png"))  # mode I;16
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(paths.setdefault("float", b / "float.tif"))
    rgb.convert("P").save(paths.setdefault("palette", b / "palette.gif"))
    # bad files
    data = (a / "rgb.jpg").read_bytes()
    (b / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (b / "noise.png").write_bytes(rng.integers(0, 255, 500, dtype=np.uint8).tobytes())
    (b / "empty.jpg").write_bytes(b"")
    (b / "notes.txt").write_text("not an image")
    return paths


def test_modes_convert_to_rgb_or_l(tmp_path: Path):
    p = _write_mixed_folder(tmp_path)
    for name in ("jpeg", "gray", "rgba", "cmyk", "i16", "float", "palette"):
        assert load_image(p[name]).mode == "RGB", name
        assert load_image(p[name], grayscale=True).mode == "L", name
    i16 = np.asarray(load_image(p["i16"], grayscale=True))
    assert i16[0, 0] == 0 and i16[0, 8] == 128 and i16[8, 0] == 255  # scaled, not clipped at 255
    rgba = np.asarray(load_image(p["rgba"]))
    assert tuple(rgba[0, 0]) == (200, 0, 0) and tuple(rgba[15, 0]) == (255, 255, 255)  # transparent -> white
    assert np.asarray(load_image(p["float"], grayscale=True))[0, 0] == 128  # [0, 1] floats scaled to 8 bits


def test_bad_files_are_counted_skipped_and_listed_with_strict(tmp_path: Path):
    _write_mixed_folder(tmp_path)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        index = scan_folder(tmp_path)
    msg = "\n".join(str(x.message) for x in w)
    assert "skipped 4 unreadable file(s)" in msg
    assert index.classes == ["a", "b"] and len(index.samples) == 7 and len(index.bad) == 4
    ds = FolderDataset(index)
    assert all(ds[i][0].mode == "RGB" for i in range(len(ds)))
    with pytest.raises(ValueError) as e:
        scan_folder(tmp_path, strict=True)
    for name in ("truncated.jpg", "noise.png", "empty.jpg", "notes.txt"):
        assert name in str(e.value)


def test_empty_dataset_and_empty_class_are_clear_errors(tmp_path: Path):
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        scan_folder(tmp_path)
    with pytest.raises(ValueError, match="no class folders"):
        scan_folder(tmp_path / "only")
    Image.new("RGB", (8, 8)).save(tmp_path / "only" / "x.png")
    (tmp_path / "hollow").mkdir()
    (tmp_path / "hollow" / "broken.jpg").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"\['hollow'\].*no readable image"):
        scan_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "missing")
