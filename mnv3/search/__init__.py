"""The search side of the paper (§4): latency lookup tables for NetAdapt (§4.2), random specs for benchmarks.

Sits above deploy (docs/architecture.md): it measures layers through mnv3.deploy's exporters and
predictors, and reads networks only through their :class:`~mnv3.spec.types.ModelSpec`.
"""

from mnv3.search.random_spec import random_spec

__all__ = ["random_spec"]
