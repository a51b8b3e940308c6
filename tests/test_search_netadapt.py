"""NetAdapt (paper §4.2): proposals cut delta on the LUT, residual groups stay valid, truncation, the CLI, exact resume, bad input.

Tiny: V3-Small at 32 px, a few hundred Fashion-MNIST training images (held-out split of the
training set), 2 fine-tuning steps, an eager latency table built on the fly with 2 repeats.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnv3.cli.main import main
from mnv3.data import fashion_mnist as fm
from mnv3.models import build_network, build_spec, create_model
from mnv3.search.lut import LatencyTable, Measurer, Target, TimingPlan, build_table, predict
from mnv3.search.netadapt import (
    Job,
    LocalExecutor,
    NetAdapt,
    NetAdaptSettings,
    ProposalKind,
    finetune,
    finetune_config,
    floor_spec,
    make_proposals,
    residual_groups,
    structure,
    truncate,
    truncate_state,
    with_expansion,
    with_group_width,
)
from mnv3.search.netadapt import loop as loop_module
from mnv3.search.netadapt.truncate import filter_l1, l1_keep
from mnv3.spec import load_spec, save_spec
from mnv3.spec.serialize import spec_from_yaml, spec_to_dict, spec_to_yaml

RES = 32
FAST = TimingPlan(warmup=1, runs=4, repeats=2, chunk=4)
# a few hundred training images: 240 held out (val_split of 60,000), 256 to fine-tune on
TRAIN = {"val_split": 0.004, "train_subset": 256, "batch_size": 32, "threads": 1, "deterministic": True, "resolution": RES}
TRAIN_ARGS = ["--val-split", "0.004", "--train-subset", "256", "--batch-size", "32", "--train-threads", "1", "--deterministic",
              "--lut-runs", "4", "--lut-repeats", "2", "--quiet"]  # fmt: skip


def small() -> object:
    return build_spec("mobilenetv3_small_100", num_classes=10, in_chans=1)


@pytest.fixture(scope="module")
def data_ready() -> None:
    try:
        fm.load_split("train")
    except FileNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")


@pytest.fixture(scope="module")
def lut(tmp_path_factory) -> Path:
    """An eager table of V3-Small's layers at 32 px; the search measures (and caches) the rest."""
    path = tmp_path_factory.mktemp("lut") / "eager.db"
    threads = torch.get_num_threads()
    try:
        with LatencyTable(path, Target.here("eager", 1), create=True) as t:
            build_table(t, [small()], RES, Measurer("eager", 1, FAST))
    finally:
        torch.set_num_threads(threads)
    return path


@pytest.fixture()
def table(lut: Path):
    threads = torch.get_num_threads()
    with LatencyTable(lut, Target.here("eager", 1)) as t:
        yield t
    torch.set_num_threads(threads)


def latency_fn(table: LatencyTable):
    m = Measurer("eager", 1, FAST)
    return lambda spec: predict(table, spec, RES, m).total_ms


def test_residual_groups_are_derived_from_the_spec():
    assert [g.blocks for g in residual_groups(small())] == [(1,), (2, 3), (4, 5, 6), (7, 8), (9, 10, 11)]
    large = build_spec("mobilenetv3_large_100")
    groups = residual_groups(large)
    assert groups[0].stem and groups[0].blocks == (1,) and groups[0].label == "stem+block 1"
    assert [g.blocks for g in groups[1:]] == [(2, 3), (4, 5, 6), (7, 8, 9, 10), (11, 12), (13, 14, 15)]
    # a group shrinks together; the depthwise-only block 1 of Large follows its input width
    s = with_group_width(large, groups[0], 8)
    assert (s.stem.out, s.blocks[0].exp, s.blocks[0].out) == (8, 8, 8) and structure(s) == structure(large)


def test_proposals_each_cut_delta_and_keep_the_groups(table):
    spec = small()
    ref = structure(spec)
    lat = latency_fn(table)
    base = lat(spec)
    delta = 0.01 * base
    proposals, dropped = make_proposals(spec, lat, delta, reference=ref, blocks=range(7, 12))
    assert len(proposals) + len(dropped) == 5 + 2  # expansions of blocks 7-11, groups 7-8 and 9-11
    assert proposals, "no proposal cut 1 % of the latency"
    for p in proposals:
        assert base - p.latency_ms >= delta and p.latency_ms == pytest.approx(lat(p.spec))
        assert structure(p.spec) == ref
        assert [g.blocks for g in residual_groups(p.spec)] == [g.blocks for g in residual_groups(spec)]
        assert p.new_width % 8 == 0 and p.new_width < p.old_width
        if p.kind is ProposalKind.BOTTLENECK:
            assert {p.spec.blocks[b - 1].out for b in p.blocks} == {p.new_width}
        # the cut is the smallest: one step less would not have saved delta (or would change the structure)
        wider = p.new_width + 8
        if wider < p.old_width:
            cand = with_expansion(spec, p.blocks[0], wider) if p.kind is ProposalKind.EXPANSION else with_group_width(spec, residual_groups(spec)[-1 if 9 in p.blocks else 3], wider)
            assert structure(cand) != ref or base - lat(cand) < delta
    # a layer already at its minimum has no proposal: it is dropped
    at_min = with_expansion(spec, 10, 8)
    props, drop = make_proposals(at_min, lat, delta, reference=ref, blocks=[10])
    assert not props and [d.blocks for d in drop] == [(10,)]


def test_truncation_without_removal_is_exact_and_a_truncated_network_reloads_strictly():
    torch.manual_seed(0)
    for name in ("mobilenetv3_small_100", "mobilenetv3_large_100"):
        model = create_model(name, num_classes=10, in_chans=1).eval()
        x = torch.randn(2, 1, 64, 64)
        same = truncate(model, model.spec).eval()
        with torch.no_grad():
            assert torch.equal(same(x), model(x))
    spec = model.spec  # Large
    g = residual_groups(spec)
    new = with_group_width(with_group_width(spec, g[0], 8), g[2], 32)  # stem+block 1, blocks 4-6
    new = with_expansion(new, 5, 64)  # SE squeeze shrinks with it
    state = model.state_dict()
    cut = truncate_state(state, spec, new)
    rebuilt = build_network(spec_from_yaml(spec_to_yaml(new)))
    rebuilt.load_state_dict(cut, strict=True)
    with torch.no_grad():
        assert rebuilt.eval()(x).shape == (2, 10)
    # one shared keep-set for the group: the largest summed L1 of its projections' filters
    keep = l1_keep(sum(filter_l1(state[f"blocks.{i}.project.conv.weight"]) for i in (3, 4, 5)), 32)
    for i in (3, 4, 5):
        if i != 4:  # block 5's projection also loses the input channels of its shrunk expansion (below)
            assert torch.equal(cut[f"blocks.{i}.project.conv.weight"], state[f"blocks.{i}.project.conv.weight"][keep])
        assert torch.equal(cut[f"blocks.{i}.project.bn.running_mean"], state[f"blocks.{i}.project.bn.running_mean"][keep])
    assert torch.equal(cut["blocks.6.expand.conv.weight"], state["blocks.6.expand.conv.weight"][:, keep])  # the next layer's inputs
    # the expansion keeps its largest-L1 filters, and the depthwise / SE / projection channels follow
    ek = l1_keep(filter_l1(state["blocks.4.expand.conv.weight"]), 64)
    assert torch.equal(cut["blocks.4.expand.conv.weight"], state["blocks.4.expand.conv.weight"][ek][:, keep])
    assert torch.equal(cut["blocks.4.dw.conv.weight"], state["blocks.4.dw.conv.weight"][ek])
    assert torch.equal(cut["blocks.4.se.fc2.bias"], state["blocks.4.se.fc2.bias"][ek])
    assert torch.equal(cut["blocks.4.project.conv.weight"], state["blocks.4.project.conv.weight"][keep][:, ek])
    # the stem belongs to group 1 of Large: block 1 (depthwise only) and block 2's input follow it
    sk = l1_keep(filter_l1(state["stem.conv.weight"]) + filter_l1(state["blocks.0.project.conv.weight"]), 8)
    assert torch.equal(cut["blocks.0.dw.conv.weight"], state["blocks.0.dw.conv.weight"][sk])
    assert torch.equal(cut["blocks.1.expand.conv.weight"], state["blocks.1.expand.conv.weight"][:, sk])


def test_one_iteration_end_to_end_through_the_cli(data_ready, lut: Path, tmp_path: Path, capsys):
    out = tmp_path / "adapted"
    args = ["search", "netadapt", "--model", "mobilenetv3_small_100", "--lut", str(lut), "--target", "0.97x", "-o", str(out),
            "--steps", "2", "--delta", "0.005", "--blocks", "9-11", "--max-iterations", "1", *TRAIN_ARGS]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    assert "1 iteration(s)" in capsys.readouterr().out
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1
    rec = history[0]
    assert len(rec["proposals"]) + len(rec["dropped"]) == 4  # expansions of 9, 10, 11 and group 9-11
    for p in rec["proposals"]:
        assert {"kind", "blocks", "old_width", "new_width", "latency_ms", "accuracy"} <= set(p)
        assert rec["latency_ms_before"] - p["latency_ms"] >= rec["delta_ms"]
    chosen = rec["proposals"][rec["chosen"]]
    assert rec["latency_ms"] == chosen["latency_ms"] and rec["accuracy"] == chosen["accuracy"]
    spec = load_spec(out / "spec.yaml")
    assert spec.name == "mobilenetv3_small_100+netadapt1" and structure(spec) == structure(small())
    from mnv3.weights import model_from_file

    net, meta = model_from_file(out / "model.safetensors")
    assert net.spec == spec and meta.categories == list(fm.CLASSES)
    assert (out / "netadapt.png").stat().st_size > 0
    assert main(["profile", str(out / "spec.yaml")]) == 0
    # a finished search resumed does nothing more; without --resume the folder is refused
    assert main(args + ["--resume"]) == 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 1
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def _search(table, out: Path, target: str) -> NetAdapt:
    torch.manual_seed(0)
    model = create_model(small())
    settings = NetAdaptSettings(target=target, resolution=RES, delta=0.005, steps=2, max_iterations=2, blocks=(10, 11))
    return NetAdapt(model, finetune_config(**TRAIN), table, settings, out, measurer=Measurer("eager", 1, FAST))


def test_a_killed_search_resumes_to_the_same_result(data_ready, table, tmp_path: Path, monkeypatch):
    spec = small()
    lat = latency_fn(table)
    floor = lat(floor_spec(spec, structure(spec), blocks=(10, 11)))
    target = f"{1.001 * floor:.6f}ms"  # out of reach in 2 iterations: both runs go through both
    whole = _search(table, tmp_path / "whole", target).run()
    assert whole.iterations == 2 and not whole.reached

    real = loop_module.finetune

    def killed(job: Job):
        if job.tag.startswith("it2-"):
            raise RuntimeError("killed in iteration 2")
        return real(job)

    monkeypatch.setattr(loop_module, "finetune", killed)
    with pytest.raises(RuntimeError, match="killed"):
        _search(table, tmp_path / "cut", target).run()
    saved = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)
    assert saved["iteration"] == 1
    monkeypatch.setattr(loop_module, "finetune", real)
    resumed = _search(table, tmp_path / "cut", target).run(resume=True)

    def strip(h):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in h]

    assert spec_to_dict(resumed.spec) == spec_to_dict(whole.spec)
    assert strip(resumed.history) == strip(whole.history)
    a = torch.load(tmp_path / "whole" / "state.pt", weights_only=False)["weights"]
    b = torch.load(tmp_path / "cut" / "state.pt", weights_only=False)["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_inputs_fail_in_one_line_before_any_work(data_ready, lut: Path, tmp_path: Path, capsys):
    def err(*extra: str, model: str = "mobilenetv3_small_100") -> str:
        out = tmp_path / "bad"
        threads = torch.get_num_threads()
        try:
            code = main(["search", "netadapt", "--model", model, "--lut", str(lut), "-o", str(out), *TRAIN_ARGS, *extra])
        finally:
            torch.set_num_threads(threads)
        assert code == 2 and not (out / "state.pt").exists()
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mnv3 search: error")]
        assert len(lines) == 1
        return lines[0]

    assert "is not below" in err("--target", "1.2x")
    assert "impossible" in err("--target", "0.01x")
    assert "positive fraction" in err("--target", "fast")
    assert "was built for" in err("--target", "0.9x", "--threads", "2")  # the LUT is for 1 thread
    spec = small()
    blocks = list(spec.blocks)
    blocks[2] = replace(blocks[2], out=32)  # block 3 no longer adds to block 2: the residual group is broken
    bad = save_spec(spec.replace(blocks=tuple(blocks)), tmp_path / "broken.yaml")
    assert "inconsistent residual groups" in err("--target", "0.9x", model=str(bad))


def test_ray_executor_matches_the_local_one(data_ready):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mnv3[search]')")
    from mnv3.search.netadapt import make_executor

    torch.manual_seed(0)
    model = create_model(small())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    job = Job("ray0", spec_to_dict(model.spec), state, finetune_config(**TRAIN).to_dict(), 1)
    threads = torch.get_num_threads()
    try:
        local = LocalExecutor().map(finetune, [job])[0]
    finally:
        torch.set_num_threads(threads)
    ctx = ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = make_executor("ray", ctx.address_info["address"]).map(finetune, [job])[0]
    finally:
        ray.shutdown()
    assert remote.accuracy == local.accuracy
    assert all(torch.equal(remote.state[k], local.state[k]) for k in local.state)


@pytest.mark.slow
def test_bn_recalibration_makes_a_short_proxy_run_scoreable(data_ready):
    """A few steps from scratch leave BN's running statistics near their init (momentum 0.01, §5.1's decay 0.99), so the
    held-out score sits near chance; recomputing them over training batches (once-for-all's BN calibration) fixes that."""
    torch.manual_seed(0)
    model = create_model(small())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = finetune_config(**{**TRAIN, "lr": 0.05}).to_dict()
    threads = torch.get_num_threads()
    try:
        untouched = finetune(Job("bn0", spec_to_dict(model.spec), state, cfg, 0, 0))
        recal_only = finetune(Job("bn1", spec_to_dict(model.spec), state, cfg, 0, 2))
        plain = finetune(Job("bn2", spec_to_dict(model.spec), state, cfg, 20, 0))
        recal = finetune(Job("bn3", spec_to_dict(model.spec), state, cfg, 20, 4))
    finally:
        torch.set_num_threads(threads)
    key = next(k for k in state if k.endswith("running_var"))
    assert torch.equal(untouched.state[key], state[key])  # 0 batches: the statistics are kept
    assert not torch.allclose(recal_only.state[key], state[key])  # recomputed from data
    assert all(torch.equal(recal_only.state[k], state[k]) for k in state if "running" not in k and "num_batches" not in k)
    print(f"held-out accuracy after 20 steps: {plain.accuracy:.3f} without, {recal.accuracy:.3f} with recalibration")
    assert recal.accuracy > plain.accuracy + 0.05
