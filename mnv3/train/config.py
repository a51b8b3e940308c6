"""The training configuration: one flat dataclass, filled from a packaged YAML recipe and overrides.

Recipes live in ``mnv3/recipes/<name>.yaml`` (or any YAML path) and are read with
``yaml.safe_load``; every key must be a field below. Command-line flags and ``--set key=value``
override any field. The resolved configuration is written to the run folder as ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mnv3.spec.textfiles import parse_yaml, read_text
from mnv3.utils.suggest import did_you_mean

OPTIMIZERS = ("rmsprop_tf", "rmsprop", "sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
VERIFY = ("full", "header", "none")


@dataclass
class TrainConfig:
    """Every knob of a run. Defaults are the paper's (§6.1.1) where it gives one; see recipes/paper.yaml."""

    # task and model
    task: str = "classification"  # a name in mnv3.tasks.TASKS: what the outputs mean (loss, metrics, reports)
    model: str = "mobilenetv3_large_100"
    preset: str | None = None  # convention preset; None: the weights' preset when fine-tuning, else paper
    width: float | None = None
    model_overrides: dict | None = None  # any other create_model keyword, e.g. {pool: global} for LR-ASPP (docs/segmentation.md)
    dropout: float | None = None  # None: the model's own (0.2, paper §6.1.1)
    bn_momentum: float | None = None  # PyTorch convention: 1 - TF decay (paper BN decay 0.99 -> 0.01)
    weights: str | None = None  # start from these weights (fine-tuning); classifier resized to the data
    qat: bool = False  # quantization-aware training through mnv3.deploy.quantize.prepare_qat
    # data
    data: str | None = "fashion-mnist"  # "fashion-mnist" or an ImageFolder root (with train/ and val/ or test/)
    data_dir: str | None = None  # where the Fashion-MNIST IDX files are
    download: bool = False
    val_split: float = 0.0  # hold out this fraction of the training images when there is no val folder
    train_subset: int | None = None  # use only the first N training images (class-balanced order)
    val_subset: int | None = None
    resolution: int = 224
    crop_pct: float = 0.875  # eval: resize to resolution / crop_pct, centre-crop resolution
    interpolation: str = "bilinear"
    grayscale: bool | None = None  # None: True for Fashion-MNIST (1-channel model), False otherwise
    mean: list[float] | None = None  # None: the dataset's (ImageNet, or Fashion-MNIST's own)
    std: list[float] | None = None
    verify_images: str = "full"  # full: decode every file once before training; header; none
    strict: bool = False  # fail (listing them) instead of skipping unreadable files
    workers: int = 0
    # augmentation
    crop: str = "random_resized"  # Inception-style (paper §6.1.1); "pad": resize + padded random crop
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    crop_padding: int = 4
    hflip: float = 0.5
    auto_augment: str | None = None  # autoaugment | randaugment | trivialaugment
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) for MixUp; 0 = off
    cutmix: float = 0.0
    # optimisation
    optimizer: str = "rmsprop_tf"
    lr: float = 0.1  # at lr_base_batch images per step; scaled linearly to batch_size
    lr_base_batch: int | None = 4096
    momentum: float = 0.9
    rmsprop_decay: float = 0.9  # RMSProp's squared-gradient decay (TF rho, torch alpha)
    eps: float = 1e-3  # for rmsprop_tf: TF's epsilon (inside the square root); torch's elsewhere
    weight_decay: float = 1e-5
    wd_norm_bias: bool = False  # also decay BN and bias parameters (TF-slim regularises conv weights only)
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max global gradient norm
    # schedule (per step; epochs may be fractional)
    schedule: str = "step"
    warmup_epochs: float = 0.0
    warmup_start: float = 0.0  # warm-up starts at this fraction of the lr
    decay_epochs: float = 3.0  # step schedule: multiply by decay_rate every decay_epochs
    decay_rate: float = 0.99
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the lr
    epochs: float = 600
    max_steps: int | None = None  # stop after this many steps; the schedule still spans `epochs`
    batch_size: int = 4096  # global, over all processes
    grad_accum_steps: int = 1  # split each process's batch into this many micro-batches (gradient accumulation)
    eval_batch_size: int | None = None
    ema_decay: float | None = 0.9999
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + n) / (10 + n)) for the first updates
    # engine
    precision: str = "fp32"  # fp32 | bf16 (CPU and CUDA autocast) | fp16 (CUDA, with GradScaler)
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    threads: int | None = None  # torch intra-op threads per process
    # output
    output: str = "runs"
    name: str | None = None
    log_interval: int = 50
    checkpoint_interval: int | None = None  # steps between `last` checkpoints (None: once per epoch)
    eval_interval: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    progress: bool = True
    tensorboard: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python values (what config.yaml and checkpoints store)."""
        return dataclasses.asdict(self)

    def effective_lr(self) -> float:
        """The learning rate at this batch size: linear scaling from ``lr_base_batch`` (Goyal et al.)."""
        return self.lr * (self.batch_size / self.lr_base_batch if self.lr_base_batch else 1.0)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_OPTIONAL = {name for name, f in FIELDS.items() if "None" in str(f.type)}


def _coerce(name: str, value: Any) -> Any:
    """Check a value against the field's declared type; ints are accepted for floats."""
    ftype = str(FIELDS[name].type)
    if value is None:
        if name in _OPTIONAL:
            return None
        raise ValueError(f"config field {name!r} cannot be null")
    base = ftype.replace(" | None", "")
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list[float]": isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value),
        "dict": isinstance(value, dict) and all(isinstance(k, str) for k in value),
    }.get(base, True)
    if not ok:
        raise ValueError(f"config field {name!r} expects {ftype}, got {value!r}")
    if base == "float":
        return float(value)
    if base == "list[float]":
        return [float(v) for v in value]
    return value


# Names other libraries (timm, torchvision references, Keras) use for a field, so that a user who types
# them is pointed at mnv3's name; string similarity alone cannot link "learning_rate" to "lr".
ALIASES: dict[str, str] = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "lr_rate": "lr",
    "batch": "batch_size",
    "bs": "batch_size",
    "num_epochs": "epochs",
    "n_epochs": "epochs",
    "wd": "weight_decay",
    "opt": "optimizer",
    "optim": "optimizer",
    "scheduler": "schedule",
    "sched": "schedule",
    "lr_schedule": "schedule",
    "image_size": "resolution",
    "img_size": "resolution",
    "input_size": "resolution",
    "arch": "model",
    "dataset": "data",
    "data_path": "data",
    "num_workers": "workers",
    "amp": "precision",
    "smoothing": "label_smoothing",
    "warmup": "warmup_epochs",
    "drop_rate": "dropout",
    "dropout_rate": "dropout",
    "model_ema_decay": "ema_decay",
    "clip_grad": "grad_clip",
    "clip_grad_norm": "grad_clip",
    "output_dir": "output",
    "pretrained": "weights",
    "steps": "max_steps",
}


def field_hint(name: object) -> str:
    """``" Did you mean: x?"`` for an unknown config key: a known alias (or a typo of one) first, else a close field name."""
    key = str(name).strip().lower().replace("-", "_")
    alias = key if key in ALIASES else next(iter(difflib.get_close_matches(key, ALIASES, n=1, cutoff=0.8)), None)
    if alias is not None:
        return f" Did you mean: {ALIASES[alias]}?"
    return did_you_mean(key, FIELDS)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of ``cfg`` with the given fields replaced; unknown names get a did-you-mean error."""
    if not isinstance(overrides, dict):
        raise ValueError(f"a configuration is a mapping of config fields, got {type(overrides).__name__}")
    unknown = [k for k in overrides if k not in FIELDS]
    if unknown:
        hints = " ".join(f"{k!r}.{field_hint(k)}".rstrip(".") for k in unknown)
        raise ValueError(f"unknown config field(s): {hints} See `mnv3 train --print-config` for every field.")
    return validate(dataclasses.replace(cfg, **{k: _coerce(k, v) for k, v in overrides.items()}))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings to a dict, the values parsed as YAML scalars (``lr=0.1``, ``mean=[0.5]``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        key = k.strip().replace("-", "_")
        out[key] = parse_yaml(v, f"--set {key}={v}")
    return out


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"config field {name!r} must be one of {list(choices)}, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check ranges and choices so a typo fails before any data is read."""
    from mnv3.tasks import TASKS

    _choice("task", cfg.task, tuple(TASKS))
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("precision", cfg.precision, PRECISIONS)
    _choice("verify_images", cfg.verify_images, VERIFY)
    for name in ("batch_size", "resolution", "log_interval", "grad_accum_steps"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")
    if cfg.epochs <= 0:
        raise ValueError(f"epochs must be positive, got {cfg.epochs}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise ValueError(f"max_steps must be positive, got {cfg.max_steps}")
    if cfg.lr <= 0:
        raise ValueError(f"lr must be positive, got {cfg.lr}")
    if not 0 <= cfg.val_split < 1:
        raise ValueError(f"val_split must be in [0, 1), got {cfg.val_split}")
    if cfg.ema_decay is not None and not 0 < cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1) or null, got {cfg.ema_decay}")
    if len(cfg.crop_scale) != 2 or not 0 < cfg.crop_scale[0] <= cfg.crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {cfg.crop_scale}")
    return cfg


RECIPES = ("fashion-mnist", "paper", "torchvision", "timm", "fashion-scenes", "ssdlite-paper", "ssdlite-torchvision",
           "fashion-scenes-lraspp", "lraspp-paper", "lraspp-torchvision")  # fmt: skip
# the recipe a task trains with when --recipe is not given
DEFAULT_RECIPES = {"classification": "fashion-mnist", "detection": "fashion-scenes", "segmentation": "fashion-scenes-lraspp"}


def recipe_path(name: str) -> Path:
    """A packaged recipe's file, or ``name`` itself when it is a YAML path."""
    if Path(name).suffix in (".yaml", ".yml"):
        p = Path(name)
        if not p.is_file():
            raise FileNotFoundError(f"recipe file {name!r} does not exist")
        return p
    p = Path(str(resources.files("mnv3.recipes").joinpath(f"{name}.yaml")))
    if name not in RECIPES or not p.is_file():
        raise ValueError(f"unknown recipe {name!r}.{did_you_mean(name, RECIPES)} Packaged recipes: {list(RECIPES)}, or pass a .yaml path")
    return p


def load_recipe(name: str = "fashion-mnist", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The packaged (or given) recipe as a validated :class:`TrainConfig`, with ``overrides`` applied.

    Every problem with the file (not UTF-8, a YAML syntax error with its line and column, an unknown
    key with a did-you-mean, a wrongly typed value) is a ValueError that starts with the file's path.
    """
    path = recipe_path(name)
    source = f"recipe {path}"
    data = parse_yaml(read_text(path, source), source)
    if data is None:
        data = {}  # an empty recipe: every default
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a mapping of config fields (key: value lines), got a {type(data).__name__}")
    try:
        cfg = apply_overrides(TrainConfig(), data)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return apply_overrides(cfg, overrides or {})


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with a run (``config.yaml`` or a checkpoint)."""
    return apply_overrides(TrainConfig(), d)


def dump_config(cfg: TrainConfig) -> str:
    """The resolved configuration as YAML, every field spelled out."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
