"""Platform-aware NAS (paper §4.1): the reward, the space's encodings, sampled specs, REINFORCE, baselines, exact resume, CLI, bad input.

Tiny: V3-Small at 32 px, a few hundred Fashion-MNIST training images (held-out split of the training
set), 2 proxy steps, 3-4 samples, an eager latency table built on the fly with 2 repeats.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import test_search_netadapt as na
import torch

from mnv3.cli.main import main
from mnv3.models import build_network, build_spec, create_model
from mnv3.search.lut import LatencyTable, Measurer, Target
from mnv3.search.nas import (
    NAS,
    Controller,
    NASSettings,
    RegularizedEvolution,
    Reinforce,
    SearchSpace,
    pareto_front,
    reward,
    space_options,
)
from mnv3.search.nas import loop as loop_module
from mnv3.search.netadapt import Job, finetune_config
from mnv3.spec import load_spec

# the same tiny setup and fixtures as NetAdapt's tests: V3-Small at 32 px, a few hundred images, an eager table
FAST, RES, TRAIN, TRAIN_ARGS, small = na.FAST, na.RES, na.TRAIN, na.TRAIN_ARGS, na.small
data_ready, lut = na.data_ready, na.lut


def test_reward_is_mnasnet_soft_constraint():
    assert reward(0.8, 1.5, 1.5, -0.15) == pytest.approx(0.8)
    assert reward(0.8, 3.0, 1.5, -0.15) == pytest.approx(0.8 * 2**-0.15)
    assert reward(0.8, 0.75, 1.5, -0.07) == pytest.approx(0.8 * 0.5**-0.07)  # faster than the target: rewarded (soft)
    assert reward(0.5, 2.0, 1.0, 0.0) == 0.5
    with pytest.raises(ValueError):
        reward(0.5, 0.0, 1.0, -0.07)


@pytest.mark.parametrize("name", ["mobilenetv3_small_100", "mobilenetv3_large_100", "mnasnet_a1"])
def test_seeds_are_points_of_their_space(name):
    spec = build_spec(name)
    space = SearchSpace(spec)
    choices = space.encode(spec)
    assert space.decode(choices) == spec  # the registered spec, exactly (name and origin included)
    desc = space.describe(choices)
    assert all(c["depth"] == 0 and c["width"] == 1.0 for c in desc)
    stages = {"mobilenetv3_small_100": [1, 2, 3, 2, 3], "mobilenetv3_large_100": [1, 2, 3, 4, 2, 3], "mnasnet_a1": [1, 2, 3, 4, 2, 3, 1]}
    assert [len(s.blocks) for s in space.stages] == stages[name]


def test_mnasnet_a1_params_and_explicit_expansions():
    net = create_model("mnasnet_a1")
    assert abs(sum(p.numel() for p in net.parameters()) - 3.9e6) / 3.9e6 < 0.02  # MnasNet paper: 3.9M
    spec = net.spec
    space = SearchSpace(spec)
    # MnasNet-A1's MBConv6 / MBConv3 stages are the explicit 6 / 3 expansion choices too
    c = space.encode(spec)
    exp_at = [i for i, d in enumerate(space.decisions) if d.kind == "expansion"]
    six, three = space.options.expansions.index(6), space.options.expansions.index(3)
    alt = list(c)
    for stage, k in zip(range(1, 7), (six, three, six, six, six, six), strict=True):
        alt[exp_at[stage]] = k
    assert space.decode(alt) == spec


def test_other_points_round_trip_and_every_sample_builds_and_runs():
    spec = small()
    space = SearchSpace(spec)
    rng = random.Random(0)
    x = torch.randn(2, 1, RES, RES)
    for i in range(40):
        choices = [rng.randrange(n) for n in space.sizes]
        s = space.decode(choices)
        assert space.decode(space.encode(s)) == s
        if i % 4 == 0:
            with torch.no_grad():
                assert build_network(s).eval()(x).shape == (2, 10)
    fast = space.decode(space.cheapest())
    assert len(fast.blocks) == sum(max(1, len(st.blocks) - 1) for st in space.stages) and all(not b.se and b.kernel == 3 for b in fast.blocks)


def test_reinforce_raises_the_probability_of_a_rewarded_sequence():
    torch.manual_seed(0)
    ctrl = Controller([3, 2, 4, 2])
    seq = [2, 0, 3, 1]
    before, _ = ctrl.log_prob(seq)
    assert before.item() == pytest.approx(sum(torch.log(torch.tensor(1 / n)).item() for n in [3, 2, 4, 2]))  # uniform at start
    logp, _ = ctrl.log_prob(seq)
    logp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ctrl.parameters())
    ctrl.zero_grad()
    rl = Reinforce(ctrl)
    rl.baseline = 0.5
    for _ in range(5):
        rl.update([(seq, 1.0)])
    after, _ = ctrl.log_prob(seq)
    assert after.item() > before.item()
    other = [0, 1, 0, 0]
    lo_before, _ = ctrl.log_prob(other)
    rl.update([(other, -5.0)])  # a negative advantage lowers it
    assert ctrl.log_prob(other)[0].item() < lo_before.item()
    g = torch.Generator().manual_seed(1)
    assert all(0 <= k < n for k, n in zip(ctrl.sample(g), [3, 2, 4, 2], strict=True))


def test_evolution_mutates_one_decision_of_a_tournament_winner():
    evo = RegularizedEvolution([3, 3, 2], seed=0, population=3, tournament=3)
    first = evo.propose(3, [])
    assert len(first) == 3
    history = [([0, 0, 0], 0.1), ([1, 1, 1], 0.9), ([2, 2, 0], 0.5)]
    child = evo.propose(1, history)[0]
    assert sum(a != b for a, b in zip(child, [1, 1, 1], strict=True)) == 1  # the best of the whole population, one change
    assert pareto_front([(1.0, 50.0), (2.0, 60.0), (1.5, 40.0), (3.0, 55.0)]) == [0, 1]


def test_space_options_and_bad_values():
    assert space_options("mobilenetv3", depths="0", expansions="4,seed").expansions == (4, "seed")
    for opt, text, msg in (("depths", "", "empty"), ("widths", "0.75,abc", "cannot read"), ("kernels", "4", "odd"), ("se", "maybe", "cannot read")):
        with pytest.raises(ValueError, match=msg):
            space_options("mobilenetv3", **{opt: text})
    with pytest.raises(ValueError, match="unknown search space"):
        space_options("darts")


def _search(table: LatencyTable, out: Path, strategy: str, samples: int = 4) -> NAS:
    settings = NASSettings(target="0.9x", w=-0.15, samples=samples, proxy_steps=2, strategy=strategy, resolution=RES, population=2, tournament=2)
    return NAS(small(), finetune_config(**TRAIN), table, settings, out, measurer=Measurer("eager", 1, FAST))


def test_strategies_run_and_a_killed_search_resumes_to_the_same_result(data_ready, lut: Path, tmp_path: Path, monkeypatch):
    threads = torch.get_num_threads()
    try:
        with LatencyTable(lut, Target.here("eager", 1)) as table:
            evo = _search(table, tmp_path / "evo", "evolution", samples=3).run()
            assert len(evo.samples) == 3 and all(0 <= r["accuracy"] <= 1 for r in evo.samples)
            whole = _search(table, tmp_path / "whole", "controller").run()
            real = loop_module.finetune

            def killed(job: Job):
                if job.tag == "s2":
                    raise RuntimeError("killed at sample 3")
                return real(job)

            monkeypatch.setattr(loop_module, "finetune", killed)
            with pytest.raises(RuntimeError, match="killed"):
                _search(table, tmp_path / "cut", "controller").run()
            assert len(torch.load(tmp_path / "cut" / "state.pt", weights_only=False)["samples"]) == 2
            monkeypatch.setattr(loop_module, "finetune", real)
            resumed = _search(table, tmp_path / "cut", "controller").run(resume=True)
    finally:
        torch.set_num_threads(threads)

    def strip(samples):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in samples]

    assert strip(resumed.samples) == strip(whole.samples)
    assert resumed.best_spec == whole.best_spec
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=False)["strategy"]
    b = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)["strategy"]
    assert a["baseline"] == b["baseline"] and all(torch.equal(a["controller"][k], b["controller"][k]) for k in a["controller"])


def test_cli_end_to_end_and_bad_inputs(data_ready, lut: Path, tmp_path: Path, capsys):
    out = tmp_path / "nas"
    args = ["search", "nas", "--space", "mobilenetv3", "--seed-model", "mobilenetv3_small_100", "--lut", str(lut), "--target-latency", "0.9x",
            "--w", "-0.15", "--samples", "3", "--proxy-steps", "2", "--strategy", "random", "--executor", "local", "-o", str(out), *TRAIN_ARGS]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
        assert "3 sample(s)" in capsys.readouterr().out
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        assert len(rows) == 3
        target_ms = torch.load(out / "state.pt", weights_only=False)["target_ms"]
        for r in rows:
            assert {"choices", "name", "params", "madds", "latency_ms", "accuracy", "reward"} <= set(r)
            assert r["reward"] == pytest.approx(reward(r["accuracy"], r["latency_ms"], target_ms, -0.15))
        best = max(rows, key=lambda r: r["reward"])
        spec = load_spec(out / "best_spec.yaml")
        assert spec.name == best["name"] and (out / "pareto.png").stat().st_size > 0
        assert main(["profile", str(out / "best_spec.yaml")]) == 0
        # the spec file is a seed for NetAdapt and for training (checked up to the work: both resolve it)
        from mnv3.models.registry import resolve_spec

        assert build_network(resolve_spec(str(out / "best_spec.yaml"), num_classes=10)).spec.blocks == spec.blocks
        assert main(args + ["--resume"]) == 0  # finished: nothing more
        assert len((out / "samples.jsonl").read_text().splitlines()) == 3
        capsys.readouterr()

        def err(*extra: str, base: list[str] | None = None) -> str:
            bad = tmp_path / "bad"
            code = main([*(base or ["search", "nas", "--seed-model", "mobilenetv3_small_100", "--lut", str(lut), "--samples", "2", "--proxy-steps", "2"]),
                         "-o", str(bad), *TRAIN_ARGS, *extra])  # fmt: skip
            assert code == 2 and not (bad / "state.pt").exists()
            lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mnv3 search: error")]
            assert len(lines) == 1
            return lines[0]

        assert "fastest point of the space" in err("--target-latency", "0.0001ms")
        assert "empty" in err("--target-latency", "1ms", "--kernels", ",")
        assert "cannot read" in err("--target-latency", "1ms", "--widths", "0.5,wide")
        assert "was built for" in err("--target-latency", "1ms", "--threads", "2")  # the LUT is for 1 thread
        assert "positive fraction" in err("--target-latency", "fast")
    finally:
        torch.set_num_threads(threads)
