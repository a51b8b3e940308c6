"""Which data a run's task trains on: one builder per registered task (:data:`mnv3.tasks.TASKS`)."""

from __future__ import annotations

from collections.abc import Callable

from mnv3.train.config import TrainConfig
from mnv3.train.data import DataBundle, build_data
from mnv3.train.data_detection import detection_data
from mnv3.train.data_segmentation import segmentation_data
from mnv3.train.distributed import DistInfo

DATA_BUILDERS: dict[str, Callable[[TrainConfig, DistInfo], DataBundle]] = {
    "classification": build_data,
    "detection": detection_data,
    "segmentation": segmentation_data,
}


def build_task_data(cfg: TrainConfig, info: DistInfo) -> DataBundle:
    """The datasets of ``cfg.task``; a task without a data builder yet is a clear error."""
    try:
        builder = DATA_BUILDERS[cfg.task]
    except KeyError:
        raise ValueError(f"mnv3 train cannot load data for task {cfg.task!r} yet (it trains {sorted(DATA_BUILDERS)})") from None
    return builder(cfg, info)
