"""Fashion scenes: Fashion-MNIST items pasted onto photographs, written as a COCO dataset (paper §6.3 needs detection data).

No download: the items are Fashion-MNIST's (train items for ``train``, test items for ``test``) and
the backgrounds are scikit-image's bundled photographs (https://scikit-image.org/docs/stable/api/skimage.data.html)
or any folder of photos. Each 320x320 scene holds 1-8 tinted items whose longer side is 24-160 px,
pasted through their own mask (Fashion-MNIST intensity > ``MASK_THRESHOLD``); a later item may
hide part of an earlier one, never more than half of it. Layout of ``DIR``::

    DIR/fashion-scenes.json          manifest (generator version, seed, counts), written last
    DIR/{train,test}/images/NNNNNN.jpg
    DIR/{train,test}/masks/NNNNNN.png  semantic mask: 0 background, 1..10 class id, 255 ignore
    DIR/{train,test}/instances.json  COCO instances: xywh boxes, RLE masks, categories 1..10

The semantic masks' 255 band is 2 px wide (1 px each side of every item edge, where the paste
and the JPEG blend). Boxes and masks describe the visible part of each item (COCO convention:
https://cocodataset.org/#format-data). Scene ``i`` of a split depends only on (seed, split, i), so a
larger set extends a smaller one, and the same arguments give byte-identical files.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mnv3.data.fashion_mnist import CLASSES, load_split
from mnv3.data.images import IMAGE_EXTENSIONS, check_image, open_image
from mnv3.utils.atomic import atomic_write_text

GENERATOR = "mnv3.fashion-scenes"
VERSION = 1
MANIFEST = "fashion-scenes.json"
IMAGE_SIZE = 320
ITEM_SIZE = (24, 160)  # longer side of a pasted item, px (log-uniform)
MAX_OBJECTS = 8
MASK_THRESHOLD = 25  # Fashion-MNIST intensity (0-255, after resizing) above which a pixel belongs to the item
MAX_HIDDEN = 0.5  # an item may lose at most this fraction of its own area to later items
IGNORE = 255
FORMATS = ("jpg", "png")
JPEG_QUALITY = 95
SPLITS = ("train", "test")
DEFAULT_TRAIN = 8000
DEFAULT_TEST = 1000
# scikit-image's bundled photographs (no download needed); drawings, documents and duplicates left out
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)
_SPLIT_CODE = {"train": 0, "test": 1}


def cache_root() -> Path:
    """mnv3's cache folder: ``$MNV3_CACHE``, else ``$XDG_CACHE_HOME/mnv3``, else ``~/.cache/mnv3``."""
    if os.environ.get("MNV3_CACHE"):
        return Path(os.environ["MNV3_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mnv3"


class Backgrounds:
    """Photographs to cut backgrounds from: scikit-image's bundled ones, or every readable image under a folder."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = None if folder is None else Path(folder).resolve()
        if self.folder is None:
            try:
                import skimage.data  # noqa: F401
            except ImportError:
                raise ValueError(
                    "fashion scenes need scikit-image's sample photographs (pip install scikit-image, or "
                    "pip install 'mnv3[detection]'), or a folder of photos (--backgrounds FOLDER)"
                ) from None
            self.names: list[str] = list(SKIMAGE_PHOTOS)
        else:
            if not self.folder.is_dir():
                raise FileNotFoundError(f"backgrounds folder {str(self.folder)!r} does not exist")
            files = sorted(p for p in self.folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            self.names = [str(p.relative_to(self.folder)) for p in files if check_image(p, full=False) is None]
            if not self.names:
                raise ValueError(
                    f"no readable image under the backgrounds folder {self.folder} (extensions {', '.join(IMAGE_EXTENSIONS)})"
                )
        self._load = lru_cache(maxsize=128)(self._read)  # <= 2 MB each after the downscale

    @property
    def source(self) -> str:
        """What the manifest records: ``skimage`` or the folder's absolute path."""
        return "skimage" if self.folder is None else str(self.folder)

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, i: int) -> np.ndarray:
        name = self.names[i]
        if self.folder is None:
            import skimage.data

            a = np.asarray(getattr(skimage.data, name)())
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=2)
            a = np.ascontiguousarray(a[..., :3].astype(np.uint8))
        else:
            try:
                a = np.asarray(open_image(self.folder / name, "RGB"))
            except (OSError, ValueError) as e:  # checked at listing time; changed since: say which file
                raise ValueError(f"background photo {self.folder / name} cannot be read any more: {e}") from None
        short = min(a.shape[:2])
        if short > 2 * IMAGE_SIZE:  # crops are at least half the shorter side: no detail is lost, resizing is 4x+ cheaper
            k = 2 * IMAGE_SIZE / short
            size = (max(1, round(a.shape[1] * k)), max(1, round(a.shape[0] * k)))
            a = np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BILINEAR))
        return a

    def get(self, i: int) -> np.ndarray:
        """The i-th photograph as an (H, W, 3) uint8 array, shorter side at most ``2 * IMAGE_SIZE`` (cached)."""
        return self._load(i)


@dataclass
class Scene:
    """One generated scene: the RGB image, each visible item's (class index 0-9, mask), and the semantic mask."""

    image: np.ndarray
    items: list[tuple[int, np.ndarray]]
    semantic: np.ndarray


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of scene ``index`` of ``split``: a pure function of the three, so scenes never shift."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def _background(rng: np.random.Generator, backgrounds: Backgrounds) -> np.ndarray:
    photo = backgrounds.get(int(rng.integers(len(backgrounds))))
    h, w = photo.shape[:2]
    short = min(h, w)
    side = int(rng.integers(max(1, short // 2), short + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(crop)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.array(img, dtype=np.uint8)


def _item(rng: np.random.Generator, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(intensity in [0, 1], mask) of one Fashion-MNIST item cropped to its extent and resized to a random size."""
    ys, xs = np.nonzero(item > MASK_THRESHOLD)
    crop = item[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    longer = math.exp(rng.uniform(math.log(ITEM_SIZE[0]), math.log(ITEM_SIZE[1])))
    aspect = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))  # a little stretch either way
    h, w = crop.shape[0], crop.shape[1] * aspect
    k = longer / max(h, w)
    size = (max(2, round(w * k)), max(2, round(h * k)))
    big = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR))
    return big.astype(np.float32) / 255.0, big > MASK_THRESHOLD


def _ignore_band(instances: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another instance (or background): a 2 px band along every item edge."""
    band = np.zeros(instances.shape, dtype=bool)
    dx = instances[:, 1:] != instances[:, :-1]
    band[:, 1:] |= dx
    band[:, :-1] |= dx
    dy = instances[1:, :] != instances[:-1, :]
    band[1:, :] |= dy
    band[:-1, :] |= dy
    return band


def make_scene(rng: np.random.Generator, items: np.ndarray, labels: np.ndarray, backgrounds: Backgrounds) -> Scene:
    """Compose one scene: a photo crop and 1-8 tinted items, each pasted through its mask, none more than half hidden."""
    canvas = _background(rng, backgrounds)
    inst = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int16)  # 1-based index of the visible item per pixel
    full: list[int] = [0]  # each item's own (unoccluded) area
    visible: list[int] = [0]
    classes: list[int] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(10):
            j = int(rng.integers(len(items)))
            value, mask = _item(rng, items[j])
            h, w = mask.shape
            area = int(mask.sum())
            y, x = int(rng.integers(0, IMAGE_SIZE - h + 1)), int(rng.integers(0, IMAGE_SIZE - w + 1))
            region = inst[y : y + h, x : x + w]
            hidden = np.bincount(region[mask], minlength=len(full))
            if area < 16 or any(visible[k] - hidden[k] < (1 - MAX_HIDDEN) * full[k] for k in range(1, len(full))):
                continue
            tint = rng.uniform(40, 255, size=3).astype(np.float32)
            pixels = np.clip(tint * (0.25 + 0.75 * value[..., None]), 0, 255).astype(np.uint8)
            canvas[y : y + h, x : x + w][mask] = pixels[mask]
            region[mask] = len(full)
            for k in range(1, len(full)):
                visible[k] -= int(hidden[k])
            full.append(area)
            visible.append(area)
            classes.append(int(labels[j]))
            break
    class_of = np.array([0] + [c + 1 for c in classes], dtype=np.uint8)
    semantic = class_of[inst]
    semantic[_ignore_band(inst)] = IGNORE
    scene_items = [(c, inst == k + 1) for k, c in enumerate(classes)]
    return Scene(canvas, scene_items, semantic)


def coco_categories() -> list[dict[str, Any]]:
    """The 10 Fashion-MNIST classes as COCO categories with ids 1..10."""
    return [{"id": i + 1, "name": name, "supercategory": "fashion"} for i, name in enumerate(CLASSES)]


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(img).save(buf, format="JPEG", quality=JPEG_QUALITY)
    else:
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:  # made durable by one os.sync() before the manifest (far faster than a fsync per file)
        f.write(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    from pycocotools import mask as mask_utils

    out = []
    for k, (c, m) in enumerate(scene.items):
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        box = [float(v) for v in mask_utils.toBbox(rle)]
        out.append(
            {
                "id": first_id + k,
                "image_id": image_id,
                "category_id": c + 1,
                "bbox": box,
                "area": float(mask_utils.area(rle)),
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "iscrowd": 0,
            }
        )
    return out


def _generate_split(
    tmp: Path,
    split: str,
    count: int,
    seed: int,
    backgrounds: Backgrounds,
    fmt: str,
    data_dir: str | os.PathLike | None,
    download: bool,
    progress: bool,
) -> None:
    items, labels = load_split(split, data_dir, download_missing=download)
    items_np, labels_np = items.numpy(), labels.numpy()
    (tmp / split / "images").mkdir(parents=True)
    (tmp / split / "masks").mkdir()
    images, annotations = [], []
    it: Iterator[int] | Sequence[int] = range(count)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"fashion scenes {split}", unit="img", disable=None)
    for i in it:
        scene = make_scene(scene_rng(seed, split, i), items_np, labels_np, backgrounds)
        name = f"{i:06d}"
        _write(tmp / split / "images" / f"{name}.{fmt}", _encode(scene.image, fmt))
        _write(tmp / split / "masks" / f"{name}.png", _encode(scene.semantic, "png"))
        images.append({"id": i + 1, "file_name": f"{name}.{fmt}", "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        annotations += _annotations(scene, i + 1, len(annotations) + 1)
    coco = {
        "info": {
            "description": f"mnv3 fashion scenes ({split}), generator version {VERSION}, seed {seed}",
            "version": str(VERSION),
        },
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    _write(tmp / split / "instances.json", json.dumps(coco, separators=(",", ":")).encode("utf-8"))


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a complete fashion-scenes folder, or None (absent, unreadable, or another generator's)."""
    try:
        m = json.loads((Path(out) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("generator") == GENERATOR and m.get("complete") is True else None


def _arguments(train: int, test: int, seed: int, backgrounds: str, fmt: str) -> dict[str, Any]:
    return {"version": VERSION, "seed": seed, "train": train, "test": test, "backgrounds": backgrounds, "format": fmt}


def _remove(path: Path) -> None:
    """Delete a folder tree or a file, whichever ``path`` is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(out: Path) -> None:
    """Delete ``.<name>.partial-<pid>`` / ``.old-<pid>`` left by generations that were killed (their process is gone)."""
    for p in [*out.parent.glob(f".{out.name}.partial-*"), *out.parent.glob(f".{out.name}.old-*")]:
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            _remove(p)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One generator per output folder at a time (a sibling lock file, flock); others wait, then find it done."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def generate_fashion_scenes(
    out: str | os.PathLike,
    train: int = DEFAULT_TRAIN,
    test: int = DEFAULT_TEST,
    seed: int = 0,
    backgrounds: str | os.PathLike | None = None,
    *,
    image_format: str = "jpg",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    force: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write a fashion-scenes COCO dataset to ``out``; a no-op when ``out`` already holds the same one.

    The set is built in a hidden sibling folder and renamed into place after its manifest is
    written, so a killed generation never leaves a complete-looking ``out``. ``out`` holding other
    arguments (or anything else) is a ValueError unless ``force``, which replaces it.
    """
    if train < 0 or test < 0 or train + test == 0:
        raise ValueError(f"--train and --test must be >= 0 and not both 0, got {train} and {test}")
    if image_format not in FORMATS:
        raise ValueError(f"unknown image format {image_format!r}; choose one of {FORMATS}")
    out = Path(out).expanduser().absolute()
    bg = Backgrounds(backgrounds)
    wanted = _arguments(train, test, seed, bg.source, image_format)
    with _locked(out):
        _remove_stale_partials(out)
        if out.exists():
            have = read_manifest(out)
            if have is not None and have.get("arguments") == wanted:
                return out
            if not force:
                if have is not None:
                    diff = ", ".join(
                        f"{k} {have['arguments'].get(k)!r} (asked {v!r})"
                        for k, v in wanted.items()
                        if have["arguments"].get(k) != v
                    )
                    raise ValueError(
                        f"{out} holds fashion scenes made with other arguments: {diff}; pass --force to replace it, or choose another folder"
                    )
                if not out.is_dir() or any(out.iterdir()):
                    raise ValueError(
                        f"{out} exists and is not a complete fashion-scenes dataset (no {MANIFEST}); pass --force to replace it, or choose another folder"
                    )
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            start = time.perf_counter()
            for split, count in (("train", train), ("test", test)):
                if count:
                    _generate_split(tmp, split, count, seed, bg, image_format, data_dir, download, progress)
            os.sync()  # every image, mask and JSON on disk before the manifest says the set is complete
            seconds = time.perf_counter() - start
            manifest = {
                "generator": GENERATOR,
                "arguments": wanted,
                "counts": {"train": train, "test": test},
                "image_size": IMAGE_SIZE,
                "categories": list(CLASSES),
                "semantic_masks": {"background": 0, "classes": "category id 1..10", "ignore": IGNORE},
                "complete": True,
            }
            atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n")  # last: marks the set complete
            _fsync_dir(tmp)
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.rename(out, old)
                os.rename(tmp, out)
                _remove(old)
            else:
                os.rename(tmp, out)
            _fsync_dir(out.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if log is not None:
        n = train + test
        log(f"wrote {n} fashion scenes to {out} in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} images/s)")
    return out


def fashion_scenes_dir(
    train: int = DEFAULT_TRAIN, test: int = DEFAULT_TEST, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Where :func:`ensure_fashion_scenes` keeps a set: ``<cache>/fashion-scenes-<seed>-<train>-<test>``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / f"fashion-scenes-{seed}-{train}-{test}"


def ensure_fashion_scenes(
    cache_dir: str | os.PathLike | None = None,
    train: int = DEFAULT_TRAIN,
    test: int = DEFAULT_TEST,
    seed: int = 0,
    backgrounds: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The training default: the fashion-scenes folder in the cache, generated on first use (a no-op afterwards)."""
    out = fashion_scenes_dir(train, test, seed, cache_dir)
    if backgrounds is not None:
        import hashlib

        tag = hashlib.sha1(str(Path(backgrounds).resolve()).encode(), usedforsecurity=False).hexdigest()[:8]
        out = out.with_name(f"{out.name}-bg{tag}")
    return generate_fashion_scenes(
        out, train, test, seed, backgrounds, data_dir=data_dir, download=download, progress=progress, log=log
    )
