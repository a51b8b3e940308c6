"""A loaded model in some runtime, callable on NCHW float tensors, with the input conversion kept apart.

``feed`` turns an (N, C, H, W) float tensor into what the runtime takes (numpy, NHWC, ...);
``run`` executes on an already-fed input. The latency harness times ``run`` alone, so the
conversion (done once) is not billed to the runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Predictor:
    """Base class: subclasses implement ``feed`` and ``run``; ``__call__`` does both."""

    name: str = "predictor"

    def activate(self) -> None:
        """Re-apply process-wide settings (thread pools) before timing; runtimes that need it override."""

    def feed(self, x: torch.Tensor) -> Any:
        return x

    def run(self, fed: Any) -> np.ndarray:
        raise NotImplementedError

    def run_outputs(self, fed: Any) -> list[np.ndarray]:
        """Every output of the graph in its order (a detector has two); single-output runtimes give ``[run(fed)]``."""
        return [self.run(fed)]

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        return self.run(self.feed(x))

    def predict_batches(self, images: torch.Tensor, batch: int = 1) -> np.ndarray:
        """Logits for many images, ``batch`` at a time (static-shape runtimes take batch 1 only)."""
        outs = [self(images[i : i + batch]) for i in range(0, len(images), batch)]
        return np.concatenate(outs, axis=0)

    def predict_outputs(self, images: torch.Tensor, batch: int = 1) -> list[np.ndarray]:
        """Every output for many images, ``batch`` at a time, each concatenated along the batch."""
        parts = [self.run_outputs(self.feed(images[i : i + batch])) for i in range(0, len(images), batch)]
        return [np.concatenate(p, axis=0) for p in zip(*parts, strict=True)]


class TorchPredictor(Predictor):
    """Eager PyTorch (or any callable module) under inference mode."""

    name = "eager"

    def __init__(self, module: torch.nn.Module | Any, threads: int | None = None) -> None:
        self.module = module
        self.threads = threads

    def activate(self) -> None:
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def run(self, fed: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.module(fed).float().numpy()

    def run_outputs(self, fed: torch.Tensor) -> list[np.ndarray]:
        """Every output of a module returning a tensor or a tuple of them (a raw detector's two)."""
        with torch.inference_mode():
            out = self.module(fed)
            return [t.float().numpy() for t in (out if isinstance(out, tuple | list) else (out,))]
