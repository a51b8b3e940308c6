"""Reading image files robustly: any PIL mode to RGB or L, and a scan that finds unreadable files.

Grayscale, palette, RGBA/LA (composited on white), CMYK, 16-bit and float images are converted, so
a folder of mixed files trains without surprises; files PIL cannot decode are reported, not fatal.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer and float images scaled to 8-bit grayscale (PIL's own convert clips them)."""
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        a = a.astype(np.float64) / 257.0
    elif img.mode == "I":
        hi = float(a.max()) if a.size else 0.0
        a = a.astype(np.float64) / (257.0 if hi > 255 and hi <= 65535 else (hi / 255.0 if hi > 65535 else 1.0))
    else:  # "F"
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        a = a * 255.0 if a.size and a.max() <= 1.0 else a
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def to_mode(img: Image.Image, grayscale: bool = False) -> Image.Image:
    """Convert any PIL image to 8-bit RGB (or L when ``grayscale``), honouring EXIF orientation."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if grayscale else "RGB"
    return img if img.mode == target else img.convert(target)


def load_image(path: str | Path, grayscale: bool = False) -> Image.Image:
    """Open, fully decode and convert one image file; raises OSError/ValueError for a bad file."""
    with Image.open(path) as img:
        img.load()
        return to_mode(img, grayscale)


def check_image(path: Path, full: bool = True) -> str | None:
    """None when the file decodes, else a short reason (empty, not an image, truncated, ...)."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            if full:
                img.load()  # a truncated file fails here ("image file is truncated")
            else:
                img.verify()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files; every one means "skip"
        return f"{type(e).__name__}: {e}".strip()[:200]
    return None


@dataclass(frozen=True)
class BadFile:
    """A file that was skipped and why."""

    path: str
    reason: str


def find_bad_files(paths: Sequence[Path], full: bool = True, threads: int = 4, progress: bool = False) -> list[BadFile]:
    """Check every file (decoding in a thread pool, PIL releases the GIL); return the unreadable ones."""
    it: Iterable[str | None]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        it = pool.map(lambda p: check_image(p, full), paths, chunksize=64)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(paths), desc="checking images", unit="img", disable=None)
        reasons = list(it)
    return [BadFile(str(p), r) for p, r in zip(paths, reasons, strict=True) if r is not None]


def report_bad_files(bad: Sequence[BadFile], root: str | Path, strict: bool) -> None:
    """Warn with a count (and a few examples), or with ``strict`` raise listing every bad file."""
    if not bad:
        return
    listing = "\n".join(f"  {b.path}: {b.reason}" for b in bad)
    if strict:
        raise ValueError(f"{len(bad)} unreadable file(s) under {root} (--strict):\n{listing}\nremove or fix them, or drop --strict to skip them")
    shown = "\n".join(f"  {b.path}: {b.reason}" for b in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    warnings.warn(f"skipped {len(bad)} unreadable file(s) under {root} (use --strict to fail instead):\n{shown}{more}", stacklevel=2)
