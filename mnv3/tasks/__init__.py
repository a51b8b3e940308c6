"""Tasks: what a network's outputs mean (loss, metrics, reports). The engine runs any registered task."""

from mnv3.tasks.base import Evaluation, Meter, Task
from mnv3.tasks.classification import ClassificationTask, EvalResult

TASKS: dict[str, type[Task]] = {ClassificationTask.name: ClassificationTask}


def task_class(name: str) -> type[Task]:
    """The registered task called ``name``; an unknown name is a ValueError that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the registered tasks are {sorted(TASKS)}") from None


__all__ = ["TASKS", "ClassificationTask", "EvalResult", "Evaluation", "Meter", "Task", "task_class"]
