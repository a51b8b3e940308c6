"""Reading hand-written YAML / JSON files (recipes, specs): every failure is one ValueError line.

The line names the file, and for a syntax error the line and column, so a user can go straight
to the typo instead of reading a parser traceback. YAML is only ever read with ``yaml.safe_load``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_text(path: Path, source: str) -> str:
    """The UTF-8 text of ``path``; a binary file or one that cannot be read is a ValueError naming ``source``."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError(f"{source}: is a folder, not a file") from None
    except OSError as e:  # permissions, I/O errors (a missing file is checked by the callers)
        raise ValueError(f"{source}: cannot be read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{source}: not a text file (byte {e.start} is not UTF-8)") from None


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def parse_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` of ``text``; a syntax error is ``"<source>: line L, column C: invalid YAML: ..."``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{_at(mark)}: " if mark is not None else ""
        problem = " ".join(str(e.problem or "syntax error").split())
        context = ""
        if e.context and e.context_mark is not None and e.context_mark is not mark:
            context = f" ({' '.join(e.context.split())} started at {_at(e.context_mark)})"
        raise ValueError(f"{source}: {where}invalid YAML: {problem}{context}") from None
    except yaml.YAMLError as e:  # ReaderError (control characters) carries a position, not a mark
        raise ValueError(f"{source}: invalid YAML: {' '.join(str(e).split())}") from None


def parse_json(text: str, source: str) -> Any:
    """``json.loads`` of ``text``; a syntax error is ``"<source>: line L, column C: invalid JSON: ..."``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise ValueError(f"{source}: invalid JSON: nested too deeply") from None
