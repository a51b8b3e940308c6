"""The optional inference runtimes: which pip extra brings each one, and a clear error when it is absent.

ONNX Runtime, ExecuTorch (XNNPACK) and LiteRT are optional (``pip install 'mnv3[export]'``,
``'mnv3[executorch]'``, ``'mnv3[litert]'``); eager PyTorch and ``torch.compile`` always exist.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from enum import Enum


class Format(str, Enum):
    """File formats ``mnv3 export`` writes."""

    ONNX = "onnx"
    EXECUTORCH = "executorch"
    LITERT = "litert"


class Runtime(str, Enum):
    """Engines ``mnv3 bench`` times; the last three run an exported file."""

    EAGER = "eager"
    COMPILE = "compile"
    ONNXRUNTIME = "onnxruntime"
    EXECUTORCH = "executorch"
    LITERT = "litert"


@dataclass(frozen=True)
class Extra:
    """The pip extra of mnv3 that installs a runtime, the modules it must provide, and its version source."""

    name: str
    modules: tuple[str, ...]
    distribution: str


EXTRAS: dict[Format, Extra] = {
    Format.ONNX: Extra("export", ("onnx", "onnxscript", "onnxruntime"), "onnxruntime"),
    Format.EXECUTORCH: Extra("executorch", ("executorch", "torchao"), "executorch"),
    Format.LITERT: Extra("litert", ("litert_torch", "ai_edge_litert"), "ai-edge-litert"),
}

FILE_SUFFIX: dict[Format, str] = {Format.ONNX: ".onnx", Format.EXECUTORCH: ".pte", Format.LITERT: ".tflite"}

RUNTIME_FORMAT: dict[Runtime, Format | None] = {
    Runtime.EAGER: None,
    Runtime.COMPILE: None,
    Runtime.ONNXRUNTIME: Format.ONNX,
    Runtime.EXECUTORCH: Format.EXECUTORCH,
    Runtime.LITERT: Format.LITERT,
}


class MissingRuntimeError(ImportError, ValueError):
    """An optional runtime is not installed; the message names the pip command that installs it.

    A ValueError too, so the CLI reports it as a usage error (exit 2) rather than a crash.
    """


def missing_modules(fmt: Format | str) -> list[str]:
    """The modules of ``fmt``'s extra that cannot be imported here (empty when all are present)."""
    return [m for m in EXTRAS[Format(fmt)].modules if importlib.util.find_spec(m) is None]


def available(fmt: Format | str) -> bool:
    """True when every module the format needs is importable."""
    return not missing_modules(fmt)


def require(fmt: Format | str) -> None:
    """Raise :class:`MissingRuntimeError` naming the install command when ``fmt``'s runtime is absent."""
    fmt = Format(fmt)
    missing = missing_modules(fmt)
    if missing:
        extra = EXTRAS[fmt].name
        raise MissingRuntimeError(
            f"the {fmt.value} format needs {', '.join(missing)}, which is not installed; "
            f"install it with: pip install 'mnv3[{extra}]'"
        )


def version_of(distribution: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def runtime_version(runtime: Runtime | str) -> str:
    """Version string of the engine behind ``runtime`` (torch's for eager and compile)."""
    runtime = Runtime(runtime)
    fmt = RUNTIME_FORMAT[runtime]
    return version_of("torch" if fmt is None else EXTRAS[fmt].distribution)
