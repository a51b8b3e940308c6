"""Search baselines run in the same harness and budget as the controller (paper §4.1): random search and regularized evolution.

Regularized (aging) evolution is Real et al., "Regularized Evolution for Image Classifier
Architecture Search" (arXiv 1802.01548, Algorithm 1): a population of the P most recent samples;
each child mutates one decision of the best of S samples drawn from it, and the oldest one dies.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

History = Sequence[tuple[list[int], float]]


class Strategy(Protocol):
    """Proposes choice sequences and learns from their rewards; its whole state round-trips through ``state_dict``."""

    name: str

    def propose(self, n: int, history: History) -> list[list[int]]: ...

    def observe(self, batch: History, history: History) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RandomSearch:
    """Every decision drawn uniformly, independently (the baseline every NAS method must beat)."""

    name = "random"

    def __init__(self, sizes: Sequence[int], seed: int) -> None:
        self.sizes = tuple(sizes)
        self.rng = random.Random(seed)

    def propose(self, n: int, history: History) -> list[list[int]]:
        return [[self.rng.randrange(s) for s in self.sizes] for _ in range(n)]

    def observe(self, batch: History, history: History) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(_tuple(state["rng"]))


class RegularizedEvolution(RandomSearch):
    """Aging evolution (arXiv 1802.01548, Algorithm 1): random until the population is full, then tournament + one mutation."""

    name = "evolution"

    def __init__(self, sizes: Sequence[int], seed: int, population: int = 16, tournament: int = 4) -> None:
        if population < 2 or not 1 <= tournament <= population:
            raise ValueError(f"evolution needs population >= 2 and 1 <= tournament <= population, got {population} and {tournament}")
        super().__init__(sizes, seed)
        self.population, self.tournament = population, tournament

    def mutate(self, parent: Sequence[int]) -> list[int]:
        """The parent with one decision (among those with more than one option) set to another option."""
        child = list(parent)
        free = [i for i, s in enumerate(self.sizes) if s > 1]
        if not free:
            return child
        i = self.rng.choice(free)
        child[i] = self.rng.choice([k for k in range(self.sizes[i]) if k != parent[i]])
        return child

    def propose(self, n: int, history: History) -> list[list[int]]:
        out: list[list[int]] = []
        for _ in range(n):
            alive = list(history[-self.population :])  # the P youngest: the oldest has died (aging)
            if len(alive) + len(out) < self.population:
                out.append([self.rng.randrange(s) for s in self.sizes])
                continue
            contenders = [alive[self.rng.randrange(len(alive))] for _ in range(self.tournament)]
            parent = max(contenders, key=lambda cr: cr[1])[0]
            out.append(self.mutate(parent))
        return out


def _tuple(state: Any) -> Any:
    """random.Random's state after a round trip that may have turned its tuples into lists."""
    return tuple(_tuple(s) for s in state) if isinstance(state, (list, tuple)) else state
