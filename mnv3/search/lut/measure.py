"""Time each layer configuration alone in a runtime (paper §4.2: NetAdapt's latency comes from measurements).

A :class:`~mnv3.search.lut.keys.LayerKey` becomes the very module the network uses (mnv3's
ConvBnAct / InvertedResidual / SqueezeExcite, the head's pooling and Linear layers), built alone,
exported through :func:`mnv3.deploy.export.build_artifact` and loaded with
:func:`~mnv3.deploy.export.load_predictor` (eager: :class:`~mnv3.deploy.predictor.TorchPredictor`),
then timed at batch 1 by :func:`mnv3.deploy.bench.measure`: warm-up, then short chunks that rotate
over all layers of a group, order reversed every round, for several repeats.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnv3.blocks import ConvBnAct, InvertedResidual, SqueezeExcite, make_activation
from mnv3.deploy.bench import Case, build_case, measure
from mnv3.deploy.predictor import Predictor, TorchPredictor
from mnv3.deploy.runtimes import RUNTIME_FORMAT, Runtime, require
from mnv3.search.lut.keys import LayerKey, LayerKind
from mnv3.search.lut.store import Timing
from mnv3.spec.types import BlockSpec, Conventions, HeadSpec, ModelSpec, StemSpec

# runtimes a table can be built for: eager, and every runtime that runs an exported file
MEASURABLE: tuple[Runtime, ...] = (Runtime.EAGER, Runtime.ONNXRUNTIME, Runtime.EXECUTORCH, Runtime.LITERT)


@dataclass(frozen=True)
class TimingPlan:
    """How each group is timed: warm-up calls, timed calls per repeat, repeats, calls per chunk."""

    warmup: int = 10
    runs: int = 30
    repeats: int = 3
    chunk: int = 10

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.repeats < 1 or self.chunk < 1:
            raise ValueError(f"need runs >= 1, warmup >= 0, repeats >= 1, chunk >= 1, got {self}")


class _NearEmpty(nn.Module):
    """One tiny op on the input (a 1-pixel slice + 1): what a runtime call costs when it computes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, :1, :1] + 1.0


class _Pool(nn.Module):
    """The network's pooling step: global average pool and flatten (MobileNetV3.forward_head)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(x), 1)


def _conventions(key: LayerKey) -> Conventions:
    return Conventions(padding=key.padding)


def layer_module(key: LayerKey) -> nn.Module:
    """The module of ``key`` built from mnv3's own blocks, in eval mode (the layer the network runs)."""
    c = _conventions(key)
    k = key.kind
    if k is LayerKind.STEM:
        m: nn.Module = ConvBnAct(key.in_ch, key.out, key.kernel, c, stride=key.stride, act=key.act)
    elif k is LayerKind.BOTTLENECK:
        assert key.act is not None
        block = BlockSpec(key.kernel, key.exp, key.out, key.se, key.act, key.stride, key.dilation)
        # InvertedResidual reads only the conventions (and the SE squeeze width) from its spec
        stub = ModelSpec("lut", StemSpec(key.in_ch, key.act), (block,), HeadSpec(key.out, key.out, key.act), conventions=c)
        ir = InvertedResidual(key.in_ch, block, stub)
        if key.se and ir.se is not None and ir.se.fc1.out_channels != key.squeeze:
            ir.se = SqueezeExcite(key.exp, key.squeeze)
        m = ir
    elif k is LayerKind.HEAD_CONV:
        m = ConvBnAct(key.in_ch, key.out, 1, c, act=key.act)
    elif k is LayerKind.POOL:
        m = _Pool()
    elif k is LayerKind.HIDDEN:
        m = nn.Sequential(nn.Linear(key.in_ch, key.out), make_activation(key.act))
    elif k is LayerKind.CLASSIFIER:
        m = nn.Linear(key.in_ch, key.out)
    elif k is LayerKind.OVERHEAD:
        m = _NearEmpty()
    else:  # pragma: no cover - every kind is handled above
        raise ValueError(f"unknown layer kind {k!r}")
    return m.eval()


def layer_input(key: LayerKey) -> torch.Tensor:
    """A batch-1 input of the layer's shape: (1, C, H, W), or (1, C) for the layers after pooling."""
    g = torch.Generator().manual_seed(0)
    if key.kind in (LayerKind.HIDDEN, LayerKind.CLASSIFIER):
        return torch.randn(1, key.in_ch, generator=g)
    return torch.randn(1, key.in_ch, key.in_h, key.in_w, generator=g)


def timing_of(samples: Sequence[Sequence[float]]) -> Timing:
    """Median and spread of every timed call of every repeat (one list of milliseconds per repeat)."""
    t = np.concatenate([np.asarray(s, dtype=float) for s in samples])
    return Timing(
        float(np.median(t)),
        float(np.percentile(t, 10)),
        float(np.percentile(t, 90)),
        float(t.min()),
        float(t.max()),
        int(t.size),
        len(samples),
    )


class Measurer:
    """Times layers (and whole networks) in one runtime with a pinned thread count, batch 1, fp32."""

    def __init__(self, runtime: Runtime | str, threads: int = 1, plan: TimingPlan | None = None) -> None:
        runtime = Runtime(runtime)
        if runtime not in MEASURABLE:
            raise ValueError(f"latency tables measure {[r.value for r in MEASURABLE]}; {runtime.value!r} is not one of them")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        fmt = RUNTIME_FORMAT[runtime]
        if fmt is not None:
            require(fmt)
        self.runtime, self.threads, self.plan = runtime, threads, plan or TimingPlan()

    def _predictor(self, module: nn.Module, x: torch.Tensor, workdir: Path, name: str) -> Predictor:
        from mnv3.deploy.export import build_artifact, load_predictor
        from mnv3.deploy.runtimes import FILE_SUFFIX

        if self.runtime is Runtime.EAGER:
            torch.set_num_threads(self.threads)
            return TorchPredictor(module, self.threads)
        fmt = RUNTIME_FORMAT[self.runtime]
        assert fmt is not None
        path = workdir / f"{name}{FILE_SUFFIX[fmt]}"
        # mnv3's export flow (BN folded, NHWC LiteRT input); the layers after pooling take 2-D input, which it does not
        build_artifact(module, fmt, path, x, mnv3_flow=x.dim() == 4, workdir=workdir)
        return load_predictor(fmt, path, self.threads)

    def _case(self, key: LayerKey, workdir: Path, i: int) -> Case:
        t0 = time.perf_counter()
        x = layer_input(key)
        predictor = self._predictor(layer_module(key), x, workdir, f"layer{i}")
        predictor.activate()
        fed = predictor.feed(x)
        predictor.run(fed)
        return Case(
            "lut", key.label(), self.runtime, "fp32", self.threads, 1, key.in_h, key.in_ch, predictor, fed, time.perf_counter() - t0
        )

    def _time(self, cases: list[Case]) -> list[Timing]:
        p = self.plan
        measure(cases, warmup=p.warmup, runs=p.runs, repeats=p.repeats, chunk=p.chunk)
        return [timing_of(c.samples) for c in cases]

    def measure(self, keys: Sequence[LayerKey]) -> list[Timing]:
        """Build every layer of ``keys`` alone, then time them interleaved; one :class:`Timing` per key, in order."""
        if not keys:
            return []
        with tempfile.TemporaryDirectory(prefix="mnv3-lut-") as tmp:
            cases = [self._case(k, Path(tmp), i) for i, k in enumerate(keys)]
            return self._time(cases)

    def measure_networks(self, models: Sequence[nn.Module], resolution: int) -> list[Timing]:
        """Whole networks at ``resolution`` through the same harness (mnv3 bench's build_case), interleaved."""
        if not models:
            return []
        with tempfile.TemporaryDirectory(prefix="mnv3-lut-") as tmp:
            cases = [
                build_case(
                    m.eval(),
                    source="mnv3",
                    model_name=f"{getattr(getattr(m, 'spec', None), 'name', 'model')}#{i}",
                    runtime=self.runtime,
                    precision="fp32",
                    threads=self.threads,
                    batch=1,
                    resolution=resolution,
                    workdir=Path(tmp),
                )
                for i, m in enumerate(models)
            ]
            return self._time(cases)


def chunks(items: Sequence[LayerKey], size: int) -> list[Sequence[LayerKey]]:
    """``items`` in consecutive groups of at most ``size``."""
    return [items[i * size : (i + 1) * size] for i in range(math.ceil(len(items) / size))]
