"""NetAdapt as MobileNetV3 runs it (paper §4.2): proposals, weight truncation, fine-tune-and-score executors, the loop.

``proposals`` derives residual groups from a spec and makes the two proposal types (one block's
expansion, one group's bottleneck), each cut until the LUT predicts ``delta`` saved; ``truncate``
starts a proposal from the current weights (largest-L1 filters kept); ``executors`` fine-tunes and
scores proposals in-process or on Ray; ``loop`` runs the iterations with atomic, resumable state.
"""

from mnv3.search.netadapt.executors import (
    EXECUTORS,
    Executor,
    Job,
    JobResult,
    LocalExecutor,
    RayExecutor,
    finetune,
    make_executor,
)
from mnv3.search.netadapt.loop import (
    CRITERIA,
    FINETUNE_DEFAULTS,
    LatencyTarget,
    NetAdapt,
    NetAdaptSettings,
    SearchResult,
    finetune_config,
    plot_history,
)
from mnv3.search.netadapt.proposals import (
    Dropped,
    Group,
    Proposal,
    ProposalKind,
    check_structure,
    floor_spec,
    make_proposals,
    residual_groups,
    structure,
    with_expansion,
    with_group_width,
)
from mnv3.search.netadapt.truncate import l1_keep, truncate, truncate_state

__all__ = [
    "CRITERIA", "EXECUTORS", "FINETUNE_DEFAULTS", "Dropped", "Executor", "Group", "Job", "JobResult", "LatencyTarget", "LocalExecutor",
    "NetAdapt", "NetAdaptSettings", "Proposal", "ProposalKind", "RayExecutor", "SearchResult", "check_structure", "finetune",
    "finetune_config", "floor_spec", "l1_keep", "make_executor", "make_proposals", "plot_history", "residual_groups", "structure",
    "truncate", "truncate_state", "with_expansion", "with_group_width",
]
