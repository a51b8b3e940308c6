"""Tasks: what a network's outputs mean (loss, metrics, reports). The engine runs any registered task."""

from mnv3.tasks.base import Evaluation, Meter, Task
from mnv3.tasks.classification import ClassificationTask, EvalResult
from mnv3.tasks.detection import DetectionTask
from mnv3.tasks.segmentation import SegmentationTask
from mnv3.utils.suggest import did_you_mean

TASKS: dict[str, type[Task]] = {t.name: t for t in (ClassificationTask, DetectionTask, SegmentationTask)}


def task_class(name: str) -> type[Task]:
    """The registered task called ``name``; an unknown name is a ValueError that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the registered tasks are {sorted(TASKS)}.{did_you_mean(name, TASKS)}") from None


__all__ = ["TASKS", "ClassificationTask", "DetectionTask", "SegmentationTask", "EvalResult", "Evaluation", "Meter", "Task", "task_class"]
