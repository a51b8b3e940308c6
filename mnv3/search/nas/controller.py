"""The NAS controller (paper §4.1, MnasNet arXiv 1807.11626 §5): an LSTM emitting one choice per decision, trained with REINFORCE.

MnasNet trains its controller with PPO; mnv3 uses REINFORCE (Williams 1992) with an exponential
moving-average reward baseline: the simplest unbiased policy-gradient estimator, and enough at the few
hundred samples a proxy search affords (docs/search.md, "NAS"). Each step feeds the previous choice's
embedding to the LSTM cell; a per-decision linear head gives that decision's logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ControllerSettings:
    """Size and training of the policy: LSTM width, Adam learning rate, baseline decay, entropy bonus, softmax temperature."""

    hidden: int = 64  # MnasNet / NASNet use 100
    lr: float = 0.005
    baseline_decay: float = 0.9  # b <- decay * b + (1 - decay) * R
    entropy: float = 1e-3  # entropy bonus weight (keeps the policy from collapsing early)
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.lr <= 0 or not 0 <= self.baseline_decay < 1 or self.entropy < 0 or self.temperature <= 0:
            raise ValueError(f"controller settings need hidden >= 1, lr > 0, 0 <= baseline_decay < 1, entropy >= 0, temperature > 0; got {self}")


class Controller(nn.Module):
    """An LSTM policy over a sequence of categorical decisions with ``sizes[i]`` options each (§4.1)."""

    def __init__(self, sizes: Sequence[int], hidden: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if not sizes or min(sizes) < 1:
            raise ValueError(f"a controller needs at least one decision with at least one option, got sizes {list(sizes)}")
        self.sizes = tuple(int(s) for s in sizes)
        self.temperature = temperature
        self.offsets = [0]
        for s in self.sizes:
            self.offsets.append(self.offsets[-1] + s)
        self.embed = nn.Embedding(self.offsets[-1] + 1, hidden)  # one token per (decision, option) + a start token
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, s) for s in self.sizes)
        for head in self.heads:  # start near uniform
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _run(self, choices: Sequence[int] | None, generator: torch.Generator | None) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        h = torch.zeros(1, self.cell.hidden_size)
        c = torch.zeros_like(h)
        token = torch.tensor([self.offsets[-1]])
        out: list[int] = []
        logp = torch.zeros(())
        ent = torch.zeros(())
        for i, head in enumerate(self.heads):
            h, c = self.cell(self.embed(token), (h, c))
            probs = torch.softmax(head(h)[0] / self.temperature, dim=-1)
            if choices is None:
                k = int(torch.multinomial(probs.detach(), 1, generator=generator).item())
            else:
                k = int(choices[i])
            out.append(k)
            logp = logp + torch.log(probs[k].clamp_min(1e-12))
            ent = ent - (probs * torch.log(probs.clamp_min(1e-12))).sum()
            token = torch.tensor([self.offsets[i] + k])
        return out, logp, ent

    def sample(self, generator: torch.Generator | None = None) -> list[int]:
        """One choice sequence drawn from the policy (``generator``: the search's own random stream)."""
        with torch.no_grad():
            return self._run(None, generator)[0]

    def log_prob(self, choices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(choices), entropy summed over decisions), differentiable."""
        if len(choices) != len(self.sizes):
            raise ValueError(f"a choice sequence for this controller has {len(self.sizes)} entries, got {len(choices)}")
        _, logp, ent = self._run(choices, None)
        return logp, ent


class Reinforce:
    """REINFORCE with a moving-average baseline (Williams 1992): loss = -(R - b) log pi(a) - beta H(pi)."""

    def __init__(self, controller: Controller, settings: ControllerSettings | None = None) -> None:
        self.controller = controller
        self.settings = settings or ControllerSettings()
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.settings.lr)
        self.baseline: float | None = None

    def update(self, batch: Sequence[tuple[Sequence[int], float]]) -> dict[str, float]:
        """One policy-gradient step on (choices, reward) pairs; the baseline is the moving average of earlier rewards."""
        s = self.settings
        rewards = [float(r) for _, r in batch]
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)  # first batch: its mean (advantage 0 on average)
        b = self.baseline
        loss = torch.zeros(())
        for choices, r in batch:
            logp, ent = self.controller.log_prob(choices)
            loss = loss - (r - b) * logp - s.entropy * ent
        loss = loss / len(batch)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        for r in rewards:
            self.baseline = s.baseline_decay * self.baseline + (1 - s.baseline_decay) * r
        return {"loss": float(loss.detach()), "baseline_before": b, "baseline": self.baseline}

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


class ControllerStrategy:
    """The controller as a search strategy (§4.1): sample from the policy, then one REINFORCE step per finished batch."""

    name = "controller"

    def __init__(self, sizes: Sequence[int], seed: int, settings: ControllerSettings | None = None) -> None:
        self.settings = settings or ControllerSettings()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.controller = Controller(sizes, self.settings.hidden, self.settings.temperature)
        self.trainer = Reinforce(self.controller, self.settings)
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self, n: int, history: Sequence[tuple[list[int], float]]) -> list[list[int]]:
        """``n`` sequences from the current policy."""
        return [self.controller.sample(self.generator) for _ in range(n)]

    def observe(self, batch: Sequence[tuple[list[int], float]], history: Sequence[tuple[list[int], float]]) -> dict[str, float]:
        """A REINFORCE step on the batch just scored."""
        return self.trainer.update(batch)

    def state_dict(self) -> dict[str, Any]:
        return {**self.trainer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_state_dict(state)
        self.generator.set_state(state["generator"])
