"""ExecuTorch export lowered to the XNNPACK delegate (.pte), and loading it in the ExecuTorch runtime.

Hard-swish reaches XNNPACK as one op (``aten.hardswish``, kept whole since executorch#12360);
the SE gate is folded beforehand (:func:`~mnv3.deploy.prepare.fold_se_gate_`), so the whole
network is one delegate with nothing left to the portable kernels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnv3.deploy.graph_check import GraphReport, check_executorch
from mnv3.deploy.predictor import Predictor
from mnv3.deploy.prepare import ExpectedOps

_quiet = False


def _quiet_logs() -> None:
    """ExecuTorch and XNNPACK log every partition at INFO; keep the CLI output readable."""
    global _quiet
    if not _quiet:
        for name in ("executorch", "torchao", "root"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _quiet = True


def lower_to_xnnpack(module: nn.Module, example: torch.Tensor, expected: ExpectedOps | None) -> tuple[bytes, GraphReport | None]:
    """torch.export -> edge dialect -> XNNPACK partition -> ExecuTorch program bytes, with the graph check."""
    _quiet_logs()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir import to_edge_transform_and_lower

    try:
        exported = torch.export.export(module, (example,))
    except Exception as e:  # noqa: BLE001 - torch.export raises many types for untraceable models
        raise ValueError(f"torch.export cannot capture this model for ExecuTorch: {type(e).__name__}: {e}") from None
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    report = None
    if expected is not None:
        info = get_delegation_info(edge.exported_program().graph_module)
        delegated = {k: v.delegated for k, v in info.delegation_by_operator.items() if v.delegated}
        outside = {k: v.non_delegated for k, v in info.delegation_by_operator.items() if v.non_delegated}
        report = check_executorch(delegated, outside, info.num_delegated_subgraphs, expected)
    return edge.to_executorch().buffer, report


def set_threads(threads: int) -> None:
    """Pin ExecuTorch's (process-wide) thread pool, which XNNPACK uses."""
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


class ExecuTorchPredictor(Predictor):
    """A .pte program's ``forward`` method in the ExecuTorch runtime (static input shape)."""

    name = "executorch"

    def __init__(self, path: str | Path | bytes, threads: int = 1) -> None:
        _quiet_logs()
        from executorch.runtime import Runtime

        self.threads = threads
        set_threads(threads)
        # the runtime reads the program in place: keep the bytes and the program alive as long as the method
        self._buffer = path if isinstance(path, bytes) else None
        try:
            self.program = Runtime.get().load_program(path if isinstance(path, bytes) else Path(path))
            self.method = self.program.load_method("forward")
        except Exception as e:  # noqa: BLE001 - the runtime raises RuntimeError for any bad program
            raise ValueError(f"ExecuTorch cannot load {path if not isinstance(path, bytes) else 'the program'}: {e}") from None

    def activate(self) -> None:
        set_threads(self.threads)

    def feed(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (x.detach().float().contiguous(),)

    def run(self, fed: tuple[torch.Tensor]) -> np.ndarray:
        return self.method.execute(fed)[0].numpy()

    def run_outputs(self, fed: tuple[torch.Tensor]) -> list[np.ndarray]:
        return [t.numpy() for t in self.method.execute(fed)]
