"""The searched networks docs/benchmarks.md reports ("Search on Fashion-MNIST") stay loadable and are what it says.

Each file in bench/specs/ is the output spec of a search run; the benchmark's table gives their parameter counts,
so a change to the spec format or the builder that alters them fails here, not silently in a re-run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mnv3
from mnv3.search.nas.space import SearchSpace
from mnv3.search.netadapt.proposals import check_structure, structure
from mnv3.spec.serialize import load_spec

SPECS = Path(__file__).resolve().parent.parent / "bench" / "specs"

# file -> parameter count in docs/benchmarks.md's table (10 classes, 1 input channel)
REPORTED = {
    "netadapt-small-delta004.yaml": 937_698,
    "netadapt-small-delta002.yaml": 1_015_474,
    "nas-small-best.yaml": 993_786,
}


def _seed() -> mnv3.ModelSpec:
    return mnv3.create_model("mobilenetv3_small_100", 10, in_chans=1).spec


def test_every_spec_file_is_listed() -> None:
    assert sorted(p.name for p in SPECS.glob("*.yaml")) == sorted(REPORTED)


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_spec_builds_with_reported_params_and_runs(name: str) -> None:
    model = mnv3.create_model(SPECS / name).eval()
    assert sum(p.numel() for p in model.parameters()) == REPORTED[name]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 10)


@pytest.mark.parametrize("name", ["netadapt-small-delta004.yaml", "netadapt-small-delta002.yaml"])
def test_netadapt_specs_are_thinned_v3_small(name: str) -> None:
    """NetAdapt only narrows layers (§4.2): same residual structure as the seed, no width above the seed's."""
    seed, spec = _seed(), load_spec(SPECS / name)
    check_structure(spec, structure(seed))
    assert all(b.exp <= s.exp and b.out <= s.out for b, s in zip(spec.blocks, seed.blocks, strict=True))
    assert spec.blocks != seed.blocks


def test_nas_spec_is_a_point_of_the_space() -> None:
    space = SearchSpace(_seed())
    spec = load_spec(SPECS / "nas-small-best.yaml")
    assert space.decode(space.encode(spec)).blocks == spec.blocks
    assert space.decode(space.encode(spec)).name == spec.name
