"""Import layering: every sub-package imports only the layers below it (docs/architecture.md).

Function-level imports count as much as module-level ones: a lazy import still makes a cycle.
The order, bottom first: utils, spec, blocks, models, analysis, weights, data, tasks, train,
deploy, search, cli. ``cli`` and the package face (``mnv3/__init__.py``, ``mnv3/api.py``) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mnv3

ROOT = Path(mnv3.__file__).parent
ORDER = ("utils", "spec", "blocks", "models", "analysis", "weights", "data", "tasks", "train", "deploy", "search", "cli")
# spec and blocks are the foundation: spec imports nothing of mnv3 (not even utils), blocks only spec
ALLOWED: dict[str, set[str]] = {pkg: set(ORDER[: i + 1]) for i, pkg in enumerate(ORDER)}
ALLOWED["utils"] = {"utils"}
ALLOWED["spec"] = {"spec"}
ALLOWED["blocks"] = {"spec", "blocks"}


def _imports(path: Path, root: Path) -> list[tuple[str, int]]:
    """(imported mnv3 sub-package, line) for every import in a file, nested ones included."""
    rel = path.relative_to(root)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(rel.parts[: -node.level])
            names = [".".join(["mnv3", *base, *([node.module] if node.module else [])])]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "mnv3" and len(parts) > 1:
                out.append((parts[1], node.lineno))
    return out


def violations(root: Path = ROOT) -> list[str]:
    """Every import of a higher (or unknown) layer, as 'file:line: pkg imports other'."""
    bad = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root)
        if len(rel.parts) == 1 or rel.parts[0] in ("cli", "recipes"):  # recipes: YAML data
            continue
        pkg = rel.parts[0]
        assert pkg in ALLOWED, f"sub-package {pkg!r} has no place in the layer order; add it to ORDER and docs/architecture.md"
        for dst, line in _imports(f, root):
            if (root / dst).is_dir() and dst not in ALLOWED[pkg]:
                bad.append(f"{rel}:{line}: {pkg} imports {dst}")
    return bad


def test_no_layer_imports_a_higher_one() -> None:
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path) -> None:
    """The checker itself: a models module importing weights (the old cycle) is reported."""
    (tmp_path / "models").mkdir()
    (tmp_path / "weights").mkdir()
    (tmp_path / "models" / "registry.py").write_text("def f():\n    from mnv3.weights import load_model\n")
    assert violations(tmp_path) == ["models/registry.py:2: models imports weights"]
