"""Reading ``torch.save`` files safely, with errors that say what is wrong with the file.

Files are read with ``torch.load(weights_only=True)`` only: unpickling arbitrary objects can run
code, so a file that holds Python objects beyond tensors and plain containers is refused, and the
message says exactly that (torch's own text suggests ``weights_only=False``, which mnv3 never
does). A truncated or corrupt file, or one that is not a torch file at all, gets its own message.
"""

from __future__ import annotations

import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

_ZIP_MAGIC = b"PK\x03\x04"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")


class UnsafePickleError(ValueError):
    """The file is a pickle of Python objects that ``weights_only=True`` refuses to rebuild."""


def _pickle_bytes(path: Path, head: bytes) -> bytes | None:
    """The pickle stream of a torch zip archive (``*/data.pkl``) or a legacy / plain pickle file."""
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                return z.read(name) if name else None
        except (zipfile.BadZipFile, OSError, EOFError, KeyError):
            return None
    return path.read_bytes()


def pickled_globals(path: Path, head: bytes) -> list[str]:
    """Names of the Python classes / functions a pickle refers to, read without unpickling anything."""
    data = _pickle_bytes(path, head)
    if not data:
        return []
    names: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
    except Exception:  # noqa: BLE001, S110 - a damaged stream: keep the names read so far
        pass
    # torch's own rebuild helpers and storages are what every tensor file holds; list the rest
    foreign = [n for n in dict.fromkeys(names) if not n.startswith(("torch.", "collections.OrderedDict", "_codecs.encode"))]
    return foreign


def _describe_head(head: bytes) -> str:
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 (Keras .h5) file"
    if len(head) >= 9 and head[8:9] == b"{":
        return "it looks like a safetensors file (name it .safetensors)"
    if head.startswith(_ZIP_MAGIC):
        return "it is a zip archive, but not one written by torch.save"
    return f"it starts with bytes {head[:8].hex(' ')}, not a torch.save zip archive or pickle"


def _first_clause(e: BaseException) -> str:
    """torch's message up to its first advice sentence, on one line, never torch's weights_only advice."""
    text = " ".join(str(e).split())
    text = text.split(". This ")[0].split(". If you")[0]
    if "weights_only" in text or not text:
        return type(e).__name__
    return f"{type(e).__name__}: {text}"[:200]


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, every failure a ValueError naming ``path``.

    ``what`` names the kind of file in the message ("checkpoint", "weights file", ...). A file of
    pickled Python objects raises :class:`UnsafePickleError` (a ValueError) listing those objects.
    """
    import pickle

    import torch

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise ValueError(f"{what} {path} is empty (0 bytes): an interrupted copy or download? Copy or save it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4 ..." on plain pickles
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        objects = pickled_globals(path, head) or _GLOBAL.findall(str(e))
        is_pickle = head.startswith(_ZIP_MAGIC) or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
        if is_pickle and (objects or "Unsupported global" in str(e)):
            shown = ", ".join(objects[:4]) + (f" and {len(objects) - 4} more" if len(objects) > 4 else "")
            raise UnsafePickleError(
                f"{what} {path} holds pickled Python objects ({shown or 'not only tensors'}), which mnv3 does not load "
                "because unpickling can run code; save a plain state dict instead (torch.save(model.state_dict(), path)) "
                "or a .safetensors file"
            ) from None
        if is_pickle:
            raise ValueError(f"{what} {path} is a Python pickle that torch's safe loader cannot read ({_first_clause(e)}); save it with torch.save") from None
        raise ValueError(f"{what} {path} is not a PyTorch file: {_describe_head(head)} (truncated or corrupt?)") from None
    except Exception as e:  # noqa: BLE001 - a damaged file makes torch raise RuntimeError, EOFError, IndexError, KeyError, ...
        if head.startswith(_ZIP_MAGIC) and not zipfile.is_zipfile(path):
            raise ValueError(f"{what} {path} is truncated or corrupt: its zip archive is incomplete ({_first_clause(e)})") from None
        if head.startswith(_ZIP_MAGIC) or head[:1] == b"\x80":
            raise ValueError(f"{what} {path} is truncated or corrupt ({_first_clause(e)})") from None
        raise ValueError(f"{what} {path} is not a PyTorch file: {_describe_head(head)} (truncated or corrupt?)") from None
