"""Platform-aware NAS as MobileNetV3 runs it (paper §4.1, MnasNet arXiv 1807.11626): space, controller, baselines, loop.

``space`` is MnasNet's factorized hierarchical space around a seed with MobileNetV3's choices;
``controller`` the LSTM policy trained with REINFORCE; ``baselines`` random search and regularized
(aging) evolution; ``loop`` scores samples by ACC x (LAT / TAR)^w with the latency table and a short
proxy training, with atomic, resumable state after every finished sample.
"""

from mnv3.search.nas.baselines import RandomSearch, RegularizedEvolution, Strategy
from mnv3.search.nas.controller import Controller, ControllerSettings, ControllerStrategy, Reinforce
from mnv3.search.nas.loop import (
    NAS,
    STRATEGIES,
    NASResult,
    NASSettings,
    default_w,
    make_strategy,
    pareto_front,
    plot_pareto,
    reward,
)
from mnv3.search.nas.space import (
    DECISIONS,
    SEED,
    SPACES,
    Decision,
    SearchSpace,
    SpaceOptions,
    Stage,
    parse_option,
    seed_stages,
    space_options,
)

__all__ = [
    "DECISIONS", "NAS", "SEED", "SPACES", "STRATEGIES", "Controller", "ControllerSettings", "ControllerStrategy", "Decision", "NASResult",
    "NASSettings", "RandomSearch", "RegularizedEvolution", "Reinforce", "SearchSpace", "SpaceOptions", "Stage", "Strategy", "default_w",
    "make_strategy", "pareto_front", "parse_option", "plot_pareto", "reward", "seed_stages", "space_options",
]  # fmt: skip
