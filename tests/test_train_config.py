"""Recipes, overrides and the learning-rate schedule (RMSpropTF itself: tests/test_rmsprop_tf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mnv3.cli.main import main
from mnv3.train.config import RECIPES, TrainConfig, load_recipe, recipe_path
from mnv3.train.optim import lr_factor


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


def test_a_spec_file_trains_as_written(tmp_path):
    """A NetAdapt / NAS result (a spec file) is the network of a run; options that would change it are refused."""
    import dataclasses

    import yaml

    from mnv3.models.registry import resolve_spec
    from mnv3.spec.serialize import spec_to_dict
    from mnv3.train.engine import build_model

    spec = resolve_spec("mobilenetv3_small_100", 10, in_chans=1, width=0.5)
    path = tmp_path / "adapted.yaml"
    path.write_text(yaml.safe_dump(spec_to_dict(spec)))
    cfg = load_recipe("fashion-mnist", {"model": str(path)})
    net = build_model(cfg, 10, 1)
    assert net.spec == dataclasses.replace(spec, num_classes=10)
    with pytest.raises(ValueError, match=r"is a spec file: it fixes the network, so drop \['width'\]"):
        build_model(dataclasses.replace(cfg, width=0.75), 10, 1)
    with pytest.raises(ValueError, match="takes 1-channel input but the data has 3"):
        build_model(cfg, 10, 3)
