"""Download published weights into a local cache: hash-checked, resumable, with a progress bar.

The cache is ``$MNV3_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/mnv3/weights`` (``~/.cache/...``).
A download goes to ``<file>.part`` and is resumed with an HTTP Range request; only a file whose
digest matches the published checksum is renamed into place. A file that fails the check (fresh
or cached) is deleted and never used. With no network the error names the URL and the exact path
to put the file at.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from mnv3.weights.named import Checksum, WeightsEntry

CACHE_ENV = "MNV3_CACHE_DIR"
logger = logging.getLogger(__name__)  # library code logs (and shows a tqdm bar); it never prints
_CHUNK = 1 << 16


class DownloadError(ConnectionError, ValueError):
    """The weights could not be fetched (no network, interrupted): the message says what to do."""


def cache_dir() -> Path:
    """Where named weights are kept (created on first download)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnv3" / "weights"


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, checksum: Checksum) -> str:
    """The file's digest; raises ValueError (after deleting the file) when it does not match."""
    digest = file_digest(path, checksum.algorithm.value)
    if not checksum.matches(digest):
        path.unlink(missing_ok=True)
        raise ValueError(
            f"{path.name}: {checksum.algorithm.value} {digest} does not match the published {checksum.value} "
            f"({checksum.provenance}); the file was deleted. Download it again; if this repeats, the file at the URL changed."
        )
    return digest


def _offline_message(url: str, dest: Path, reason: object) -> str:
    return (
        f"could not download {url} ({reason}). Without network access, fetch that URL on another machine and put "
        f"the file at {dest} (or point ${CACHE_ENV} at a folder that holds it)"
    )


def download(url: str, dest: Path, checksum: Checksum, *, progress: bool = True, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part`` (resumed if present) and verify it."""
    import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    logger.info("downloading %s to %s%s", url, dest, f" (resuming at byte {start})" if start else "")
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the .part already holds the whole file
            verify(part, checksum)
            os.replace(part, dest)
            return dest
        raise ValueError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(_offline_message(url, dest, getattr(e, "reason", e))) from None
    with response:
        resumed = start > 0 and response.status == 206
        if not resumed:
            start = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if resumed else "wb") as f, tqdm.tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, disable=not progress
        ) as bar:
            received = start
            try:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"download of {url} was interrupted ({e}); run again to resume from {part}") from None
            if total is not None and received < total:  # http.client returns b"" on an early close
                raise DownloadError(f"download of {url} was interrupted at {received} of {total} bytes; run again to resume from {part}")
    verify(part, checksum)
    os.replace(part, dest)
    return dest


def fetch(entry: WeightsEntry, *, progress: bool = True, root: Path | None = None) -> Path:
    """The verified local file of a named weights entry, downloaded into the cache if needed."""
    dest = (root or cache_dir()) / entry.library.value / entry.file_name
    if dest.exists():
        try:
            verify(dest, entry.checksum)
            return dest
        except ValueError as e:  # verify deleted the bad copy; fetch a fresh one
            logger.warning("cached %s; downloading it again", e)
    return download(entry.url, dest, entry.checksum, progress=progress)
