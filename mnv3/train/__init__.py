"""Training and evaluation: recipes (YAML), the loop (DDP, EMA, mixed precision), checkpoints, metrics."""

from mnv3.train.config import TrainConfig, load_recipe
from mnv3.train.engine import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_recipe", "train"]
