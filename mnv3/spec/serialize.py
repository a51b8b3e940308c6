"""Specs to plain dicts, JSON and YAML and back (once-for-all's `.config` idea, typed).

A round trip is lossless: ``spec_from_dict(spec_to_dict(s)) == s``. YAML is read with
``yaml.safe_load`` only.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from mnv3.spec.detection import SSDLiteSpec
from mnv3.spec.segmentation import LRASPPSpec
from mnv3.spec.textfiles import parse_json, parse_yaml, read_text
from mnv3.spec.types import (
    Activation,
    AtrousStyle,
    BlockSpec,
    Conventions,
    Family,
    HeadScaling,
    HeadSpec,
    ModelSpec,
    Origin,
    Padding,
    StemScaling,
    StemSpec,
    WidthRounding,
    validate,
)

FORMAT_VERSION = 1

_CONVENTION_ENUMS: dict[str, type[Enum]] = {
    "padding": Padding,
    "stem_scaling": StemScaling,
    "head_scaling": HeadScaling,
    "expansion_rounding": WidthRounding,
    "head_conv_rounding": WidthRounding,
    "atrous_style": AtrousStyle,
}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """A JSON-ready dict of plain types; enums become their string values."""
    data = {"format_version": FORMAT_VERSION, **_plain(spec)}
    for head in ("detection", "segmentation"):
        if getattr(spec, head) is None:
            del data[head]  # a classifier's config stays what it always was
    return data


def _enum(enum: type[Enum], value: Any, where: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"{where}: unknown value {value!r}; expected one of {[e.value for e in enum]}") from None


_SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _scalar(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a scalar annotation (``int``, ``float``, ``bool``, ``str``, optionally ``| None``).

    Types are checked here, before validation, so a string width or a float kernel is an error
    that names the field instead of a TypeError deep inside a comparison or a layer constructor.
    """
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint not in _SCALARS:
        return value  # enums, nested specs and tuples are checked by their own readers
    ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # 0 written for 0.0
    if not ok:
        got = "null" if value is None else f"{value!r} of type {type(value).__name__}"
        raise ValueError(f"{where}: expected {_SCALARS[hint]}, got {got}")
    return value


def _fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(names), n=3, cutoff=0.6)  # spec imports nothing of mnv3
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"{where}: unknown field(s) {unknown}.{hint} Known fields: {sorted(names)}")
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    hints = typing.get_type_hints(cls)
    return {name: _scalar(value, hints[name], f"{where}.{name}") for name, value in data.items()}


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` read as ``hint``: a nested spec dataclass, an enum, a tuple of scalars, or a scalar."""
    args = typing.get_args(hint)
    if type(None) in args and value is None:
        return None
    inner = next((a for a in args if a is not type(None)), hint) if type(None) in args else hint
    if dataclasses.is_dataclass(inner):
        return _dataclass(inner, value, where)
    if isinstance(inner, type) and issubclass(inner, Enum):
        return _enum(inner, value, where)
    if typing.get_origin(inner) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        items = typing.get_args(inner)
        if len(items) != 2 or items[1] is not Ellipsis:
            if len(value) != len(items):
                raise ValueError(f"{where}: expected {len(items)} values, got {len(value)}")
        else:
            items = (items[0],) * len(value)
        return tuple(_scalar(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items, strict=True)))
    return value


def _dataclass(cls: type, data: Any, where: str) -> Any:
    """A (nested) spec dataclass from its plain dict, every field type-checked (the detection head spec)."""
    hints = typing.get_type_hints(cls)
    read = _fields(cls, data, where)
    return cls(**{name: _typed(value, hints[name], f"{where}.{name}") for name, value in read.items()})


def spec_from_dict(data: dict[str, Any]) -> ModelSpec:
    """Rebuild and validate a spec; errors name the field and the allowed values."""
    if not isinstance(data, dict):
        raise ValueError(f"a spec must be a mapping, got {type(data).__name__}")
    data = dict(data)
    version = data.pop("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ValueError(f"spec format_version {version!r} is not supported (this mnv3 reads version {FORMAT_VERSION})")
    origin = data.pop("origin", None)
    detection = data.pop("detection", None)
    segmentation = data.pop("segmentation", None)
    top = _fields(ModelSpec, data, "spec")
    stem = _fields(StemSpec, top["stem"], "stem")
    stem["act"] = _enum(Activation, stem["act"], "stem.act")

    blocks = []
    if not isinstance(top["blocks"], list):
        raise ValueError(f"spec.blocks must be a list of block mappings, got {type(top['blocks']).__name__}")
    for i, raw in enumerate(top["blocks"], start=1):
        b = _fields(BlockSpec, raw, f"block {i}")
        b["act"] = _enum(Activation, b["act"], f"block {i}.act")
        blocks.append(BlockSpec(**b))
    head = _fields(HeadSpec, top["head"], "head")
    head["act"] = _enum(Activation, head["act"], "head.act")
    conv = _fields(Conventions, top.get("conventions", {}), "conventions")
    for name, enum in _CONVENTION_ENUMS.items():
        if name in conv:
            conv[name] = _enum(enum, conv[name], f"conventions.{name}")
    top.update(
        stem=StemSpec(**stem),
        blocks=tuple(blocks),
        head=HeadSpec(**head),
        conventions=Conventions(**conv),
    )
    if origin is not None:
        o = _fields(Origin, origin, "origin")
        o["family"] = _enum(Family, o["family"], "origin.family")
        top["origin"] = Origin(**o)
    if detection is not None:
        top["detection"] = _dataclass(SSDLiteSpec, detection, "detection")
    if segmentation is not None:
        top["segmentation"] = _dataclass(LRASPPSpec, segmentation, "segmentation")
    spec = ModelSpec(**top)
    validate(spec)
    return spec


def spec_to_json(spec: ModelSpec, indent: int = 2) -> str:
    """Serialise to JSON text."""
    return json.dumps(spec_to_dict(spec), indent=indent)


def _parse_json(text: str, source: str) -> Any:
    """JSON text to plain data; an empty file or a syntax error names ``source`` (and the line and column)."""
    if not text.strip():
        raise ValueError(f"{source}: empty file; a spec is a JSON mapping (see `mnv3 models NAME`)")
    return parse_json(text, source)


def _parse_yaml(text: str, source: str) -> Any:
    """YAML text to plain data (``yaml.safe_load``); an empty file or a syntax error names ``source``."""
    if not text.strip():
        raise ValueError(f"{source}: empty file; a spec is a YAML mapping (see `mnv3 models NAME --yaml`)")
    return parse_yaml(text, source)


def _from_data(data: Any, source: str) -> ModelSpec:
    try:
        return spec_from_dict(data)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def spec_from_json(text: str, source: str = "spec JSON") -> ModelSpec:
    """Parse JSON text produced by :func:`spec_to_json` (or written by hand); errors name ``source``."""
    return _from_data(_parse_json(text, source), source)


def spec_to_yaml(spec: ModelSpec) -> str:
    """Serialise to YAML text (plain types only)."""
    import yaml

    return yaml.safe_dump(spec_to_dict(spec), sort_keys=False)


def spec_from_yaml(text: str, source: str = "spec YAML") -> ModelSpec:
    """Parse YAML with ``yaml.safe_load`` (never the unsafe loader); errors name ``source``."""
    return _from_data(_parse_yaml(text, source), source)


def save_spec(spec: ModelSpec, path: str | Path) -> Path:
    """Write a spec as JSON or YAML, chosen by the file suffix."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        text = spec_to_yaml(spec)
    elif path.suffix == ".json":
        text = spec_to_json(spec)
    else:
        raise ValueError(f"spec files end in .json, .yaml or .yml, got {path.name!r}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def load_spec(path: str | Path) -> ModelSpec:
    """Read a spec file written by :func:`save_spec` or by hand (.json, .yaml, .yml)."""
    path = Path(path)
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"spec files end in .json, .yaml or .yml, got {path.name!r}")
    if not path.is_file():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    text = read_text(path, f"spec file {path}")
    if path.suffix == ".json":
        return spec_from_json(text, f"spec file {path}")
    return spec_from_yaml(text, f"spec file {path}")
