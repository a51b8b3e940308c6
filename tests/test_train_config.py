"""Recipes, overrides and the optimizer / schedule mapping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from mnv3.cli.main import main
from mnv3.train.config import RECIPES, TrainConfig, load_recipe, recipe_path
from mnv3.train.optim import build_optimizer, lr_factor


@pytest.mark.parametrize("name", RECIPES)
def test_every_packaged_recipe_loads_and_says_where_it_comes_from(name: str):
    cfg = load_recipe(name)
    text = recipe_path(name).read_text()
    assert text.startswith("#") and "source" in text.lower()
    assert cfg.effective_lr() > 0


def test_paper_recipe_is_section_6_1_1():
    cfg = load_recipe("paper")
    assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.lr_base_batch, cfg.batch_size) == ("rmsprop_tf", 0.9, 0.1, 4096, 4096)
    assert (cfg.weight_decay, cfg.ema_decay, cfg.bn_momentum, cfg.resolution) == (1e-5, 0.9999, 0.01, 224)
    assert cfg.dropout == 0.2 and cfg.crop == "random_resized"


def test_overrides_are_checked(tmp_path: Path):
    cfg = load_recipe("fashion-mnist", {"epochs": 2, "lr": 1})
    assert cfg.epochs == 2.0 and isinstance(cfg.lr, float)
    with pytest.raises(ValueError, match="Did you mean: batch_size"):
        load_recipe("fashion-mnist", {"batchsize": 3})
    with pytest.raises(ValueError, match="optimizer"):
        load_recipe("fashion-mnist", {"optimizer": "adam9"})
    with pytest.raises(ValueError, match="expects"):
        load_recipe("fashion-mnist", {"epochs": "many"})
    evil = tmp_path / "evil.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ValueError, match=r"evil\.yaml: line 1, column 8: invalid YAML: could not determine a constructor"):
        load_recipe(str(evil))  # safe_load refuses Python tags


def test_cli_flags_override_the_recipe(capsys):
    assert main(["train", "--print-config", "--epochs", "7", "--lr", "0.5", "--seed", "3", "--deterministic", "--set", "mixup=0.2"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["epochs"], cfg["lr"], cfg["seed"], cfg["deterministic"], cfg["mixup"]) == (7.0, 0.5, 3, True, 0.2)
    assert cfg["model"] == load_recipe("fashion-mnist").model
    assert main(["train", "--set", "batchsize=1"]) == 2
    assert "Did you mean: batch_size" in capsys.readouterr().err


def test_schedule_warmup_step_and_cosine():
    cfg = TrainConfig(schedule="step", warmup_epochs=1, warmup_start=0.0, decay_epochs=3, decay_rate=0.99, epochs=10)
    assert lr_factor(0, 100, cfg) == 0.0 and lr_factor(50, 100, cfg) == pytest.approx(0.5)
    assert lr_factor(100, 100, cfg) == 1.0 and lr_factor(399, 100, cfg) == 1.0 and lr_factor(400, 100, cfg) == pytest.approx(0.99)
    cos = TrainConfig(schedule="cosine", epochs=10, min_lr_ratio=0.1)
    assert lr_factor(0, 10, cos) == 1.0 and lr_factor(50, 10, cos) == pytest.approx(0.55) and lr_factor(100, 10, cos) == pytest.approx(0.1)


def test_rmsprop_tf_maps_tensorflow_rmsprop_onto_torch():
    """TF: ms starts at 1, ms = rho*ms + (1-rho)*g^2, step lr*g/sqrt(ms + eps); torch gets eps' = sqrt(eps)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3, bias=False)
    cfg = TrainConfig(optimizer="rmsprop_tf", lr=0.01, lr_base_batch=None, eps=1e-3, weight_decay=0.0, wd_norm_bias=True)
    opt = build_optimizer(lin, cfg)
    assert math.isclose(opt.param_groups[0]["eps"], math.sqrt(1e-3))
    w0 = lin.weight.detach().clone()
    g = torch.tensor([[1e-3, 1e-2, 0.1, 1.0], [3.0, -1e-3, -0.03, 0.3], [-2.0, 5e-4, 0.05, -0.5]])
    lin.weight.grad = g.clone()
    opt.step()
    ms = 0.9 * torch.ones_like(g) + 0.1 * g * g  # TF's squared average after one step from 1 (torch's own start is 0)
    step_torch = w0 - lin.weight.detach()
    torch.testing.assert_close(step_torch, 0.01 * g / (ms.sqrt() + math.sqrt(1e-3)), rtol=2e-3, atol=2e-8)  # float32 subtraction
    step_tf = 0.01 * g / torch.sqrt(ms + 1e-3)
    ratio = step_torch / step_tf
    assert bool(((ratio <= 1) & (ratio >= 1 / math.sqrt(2))).all())  # the documented bound of the eps mapping
    assert float(ratio.max()) > 0.96  # and close to TF where ms >> eps
