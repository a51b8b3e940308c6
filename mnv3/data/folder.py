"""ImageFolder-layout datasets (``root/<class>/<image>``) that skip unreadable files and say so."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from mnv3.data.images import IMAGE_EXTENSIONS, BadFile, find_bad_files, open_image, report_bad_files

VERIFY_MODES = ("full", "header", "none")


@dataclass
class FolderIndex:
    """The classes and (path, label) samples of one split, and the files that were skipped."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    bad: list[BadFile] = field(default_factory=list)


def scan_folder(
    root: str | Path,
    classes: list[str] | None = None,
    verify: str = "full",
    strict: bool = False,
    threads: int = 4,
) -> FolderIndex:
    """List ``root/<class>/**`` files, check them (``verify``: full decode, header only, none) and drop bad ones.

    ``classes`` (the training split's) fixes the label order for a validation split. An empty
    dataset, or a class left with no readable image, is a ValueError that names the folder.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify_images must be one of {VERIFY_MODES}, got {verify!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"no class folders under {root}; expected the ImageFolder layout {root}/<class name>/<image files>")
    names = [d.name for d in class_dirs]
    if classes is None:
        classes = names
    else:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise ValueError(f"{root} has class folder(s) {extra} that the training split does not have; classes: {classes}")
    label_of = {c: i for i, c in enumerate(classes)}
    candidates: list[tuple[Path, int]] = []
    bad: list[BadFile] = []
    for d in class_dirs:
        for p in sorted(x for x in d.rglob("*") if x.is_file() and not x.name.startswith(".")):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                candidates.append((p, label_of[d.name]))
            else:
                bad.append(BadFile(str(p), f"not an image file (extension {p.suffix or 'none'!r})"))
    if verify != "none":
        bad_set = find_bad_files([p for p, _ in candidates], full=verify == "full", threads=threads, progress=len(candidates) > 5000)
        bad += bad_set
        skip = {b.path for b in bad_set}
        candidates = [(p, y) for p, y in candidates if str(p) not in skip]
    if not candidates:
        example = f", e.g. {bad[0].path}: {bad[0].reason}" if bad else ""
        raise ValueError(f"no readable images under {root} ({len(bad)} file(s) skipped{example}); expected {root}/<class name>/<image files>")
    report_bad_files(bad, root, strict)
    counts = [0] * len(classes)
    for _, y in candidates:
        counts[y] += 1
    empty = [classes[i] for i, n in enumerate(counts) if n == 0 and classes[i] in names]
    if empty:
        raise ValueError(f"class folder(s) {empty} under {root} hold no readable image; add images or remove the folder(s)")
    return FolderIndex(root, list(classes), [(str(p), y) for p, y in candidates], bad)


class FolderDataset(Dataset):
    """Decoded, mode-converted PIL images and labels of a :class:`FolderIndex`.

    A file that fails to decode at load time (possible with ``verify_images: header|none``) is
    replaced by the next readable sample, with a warning, so a long run is never lost to one file.
    """

    def __init__(self, index: FolderIndex, grayscale: bool = False) -> None:
        self.index = index
        self.grayscale = grayscale
        self.classes = index.classes

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int):
        n = len(self.index.samples)
        for k in range(n):
            path, label = self.index.samples[(i + k) % n]
            try:
                return open_image(path, "L" if self.grayscale else "RGB"), label
            except (OSError, ValueError) as e:  # open_image: ValueError for any undecodable file, FileNotFoundError if gone
                warnings.warn(f"skipping unreadable image {e}", stacklevel=2)
        raise ValueError(f"no image under {self.index.root} could be decoded")
