"""Training and evaluation: recipes (YAML), the loop (DDP, EMA, mixed precision), checkpoints, metrics."""

from mnv3.train.config import TrainConfig, load_recipe
from mnv3.train.engine import Hooks, RunStatus, TrainResult, train

__all__ = ["Hooks", "RunStatus", "TrainConfig", "TrainResult", "load_recipe", "train"]
