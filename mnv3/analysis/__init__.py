"""Cost analysis: parameters and multiply-adds per layer and in total."""

from mnv3.analysis.profiler import LayerCost, Profile, count_params, profile_model

__all__ = ["LayerCost", "Profile", "count_params", "profile_model"]
