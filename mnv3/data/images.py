"""Reading image files robustly: any PIL mode to RGB or L, and a scan that finds unreadable files.

Grayscale, palette, RGBA/LA (composited on white), CMYK, 16-bit and float images are converted, so
a folder of mixed files trains without surprises; files PIL cannot decode are reported, not fatal.
:func:`open_image` is the one place mnv3 opens an image file: every way a file can fail to decode
(empty, not an image, truncated, over PIL's decompression-bomb limit) becomes one ValueError line
that names the file and the reason.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


IMAGE_MODES = ("RGB", "L")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def _bomb_reason(e: Image.DecompressionBombError) -> str:
    """What PIL refused and how to lift the limit for a trusted file (PIL's text says neither clearly)."""
    m = _BOMB_PIXELS.search(str(e))
    limit = Image.MAX_IMAGE_PIXELS or 0
    size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
    need = f" = {int(m.group(1))}" if m else " (a larger number)"
    return (
        f"image has {size}, over PIL's decompression-bomb limit of {2 * limit:,} pixels "
        f"(2 x PIL.Image.MAX_IMAGE_PIXELS = {limit:,}); if you trust the file, set PIL.Image.MAX_IMAGE_PIXELS{need} "
        "before reading it, or downscale the image"
    )


def image_problem(path: Path, e: BaseException) -> str:
    """A one-line reason for an exception raised while opening or decoding ``path``."""
    if isinstance(e, Image.DecompressionBombError):
        return _bomb_reason(e)
    if isinstance(e, IsADirectoryError):
        return "is a folder, not an image file"
    if isinstance(e, UnidentifiedImageError):
        try:
            empty = path.stat().st_size == 0
        except OSError:
            empty = False
        return "empty file" if empty else "not an image (PIL recognises no image format in it)"
    text = " ".join(str(e).split())  # one line, whatever PIL put in the message
    if "truncated" in text.lower():
        return f"truncated or incomplete file ({text})"
    return f"corrupt or unsupported image ({type(e).__name__}: {text})"[:300]


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open, fully decode and convert one image file to ``mode`` ("RGB" or "L").

    A missing file is a FileNotFoundError; any file PIL cannot decode (empty, not an image,
    truncated, over the decompression-bomb limit, ...) a ValueError ``"<path>: <reason>"``.
    """
    if mode not in IMAGE_MODES:
        raise ValueError(f"open_image mode must be one of {list(IMAGE_MODES)}, got {mode!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later in a transform
            return to_mode(img, grayscale=mode == "L")
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, DecompressionBombError, SyntaxError, ...)
        raise ValueError(f"{path}: not a readable image: {image_problem(path, e)}") from None


def load_image(path: str | Path, grayscale: bool = False) -> Image.Image:
    """:func:`open_image` as RGB, or L when ``grayscale``; raises FileNotFoundError/ValueError for a bad file."""
    return open_image(path, "L" if grayscale else "RGB")


def check_image(path: Path, full: bool = True) -> str | None:
    """None when the file decodes (``full``) or its header parses, else a short reason (empty, truncated, ...)."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            if full:
                img.load()  # a truncated file fails here ("image file is truncated")
            else:
                img.verify()
    except Exception as e:  # noqa: BLE001 - PIL raises many types for bad files; every one means "skip"
        return image_problem(path, e)
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
    if strict and len(bad) == 1:  # one line, like every other input error
        raise ValueError(f"unreadable file under {root} (--strict): {bad[0].path}: {bad[0].reason}; remove or fix it, or drop --strict to skip it")
    if strict:
        raise ValueError(f"{len(bad)} unreadable file(s) under {root} (--strict):\n{listing}\nremove or fix them, or drop --strict to skip them")
    shown = "\n".join(f"  {b.path}: {b.reason}" for b in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    warnings.warn(f"skipped {len(bad)} unreadable file(s) under {root} (use --strict to fail instead):\n{shown}{more}", stacklevel=2)
