"""The cross-entropy method over continuous action sequences (PlaNet's planner).

A planner sees the world through one batched function ``score(actions) -> (N,)``: ``actions`` is a
``(N, horizon, action_dim)`` tensor of candidate sequences and higher scores are better. The same
planner therefore serves a reward head (sum of predicted rewards) and a goal-image cost (negative
latent distance to an encoded goal). Randomness comes from the ``torch.Generator`` passed to ``plan``.

PlaNet's setting (Hafner et al., 2019), meant for a GPU: horizon 12, 1000 candidates, 10 iterations,
refit to the top 100, start from N(0, 1), clip to the action bounds, execute the first action of the
final mean (``CEM.planet``). The CPU default is 300 candidates x 5 iterations, top 30: 0.19 s per cartpole
decision with the default RSSM on one laptop core, against 1.15 s for PlaNet's setting
(``benchmarks/planning_speed.py``).
"""

from __future__ import annotations

import abc

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ssl4rl.errors import UserError
from ssl4rl.utils import check_memory

Score = Callable[[torch.Tensor], torch.Tensor]

PLANET_SETTING = {"horizon": 12, "candidates": 1000, "iterations": 10, "top_k": 100}
CPU_SETTING = {"horizon": 12, "candidates": 300, "iterations": 5, "top_k": 30}
_ROLLOUT_COPIES = 4  # a batch of candidates lives as about this many float32 copies at once (noise, clipping, one-hot)


def check_positive(**values: float) -> None:
    """One-line UserError naming the first setting that is not a positive number."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise UserError(f"{name}={value!r}: must be a positive finite number")


def check_rollout_memory(candidates: int, horizon: int, width: int, what: str) -> None:
    """One-line UserError, before planning, when a few float32 copies of ``candidates`` x ``horizon`` x ``width``
    values (sampled action sequences, or the states of their rollouts) would not fit in memory."""
    check_memory(_ROLLOUT_COPIES * 4 * candidates * horizon * width,
                 f"candidates={candidates} x horizon={horizon} x {width} {what}", "use fewer candidates or a shorter horizon")


def finite_scores(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Check a score function's output is (n,) and turn NaN into -inf (such candidates never win)."""
    if scores.shape != (n,):
        raise ValueError(f"score(actions) must return shape ({n},), got {tuple(scores.shape)}")
    return torch.nan_to_num(scores.float(), nan=float("-inf"))


class _GaussianPlanner(abc.ABC):
    """Shared by CEM and MPPI: a diagonal Gaussian over action sequences refit ``iterations`` times."""

    def __init__(
        self,
        action_dim: int,
        horizon: int = 12,
        candidates: int = 300,
        iterations: int = 5,
        low: float | Sequence[float] = -1.0,
        high: float | Sequence[float] = 1.0,
        init_std: float = 1.0,
        min_std: float = 0.0,
        warm_start: bool = False,
    ) -> None:
        check_positive(action_dim=action_dim, horizon=horizon, candidates=candidates, iterations=iterations,
                       init_std=init_std)
        check_rollout_memory(candidates, horizon, action_dim, "action values")
        self.action_dim, self.horizon, self.candidates, self.iterations = action_dim, horizon, candidates, iterations
        self.low = torch.as_tensor(low, dtype=torch.float32).expand(action_dim).clone()
        self.high = torch.as_tensor(high, dtype=torch.float32).expand(action_dim).clone()
        if not bool((self.low < self.high).all()):
            raise UserError(f"action bounds low={low} high={high}: every low must be below its high")
        self.init_std, self.min_std, self.warm_start = init_std, min_std, warm_start
        self._previous: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the warm-start mean (call at the start of an episode)."""
        self._previous = None

    @abc.abstractmethod
    def _refit(self, candidates: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the next sampling distribution from scored candidates."""

    def plan(self, score: Score, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """The planned sequence ``(horizon, action_dim)``: the mean after the last refit, within the bounds."""
        h, a, n = self.horizon, self.action_dim, self.candidates
        low, high = self.low.to(device), self.high.to(device)
        mean = torch.zeros(h, a, device=device)
        if self.warm_start and self._previous is not None:
            mean = self._previous.to(device)
        std = torch.full((h, a), float(self.init_std), device=device)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        for _ in range(self.iterations):
            noise = torch.randn(n, h, a, generator=generator, device=gen_device).to(device)
            candidates = torch.maximum(torch.minimum(mean + std * noise, high), low)
            scores = finite_scores(score(candidates), n)
            mean, std = self._refit(candidates, scores)
            std = std.clamp_min(self.min_std)
        mean = torch.maximum(torch.minimum(mean, high), low)
        if self.warm_start:  # shift: step t+1 of this plan starts the next one
            self._previous = torch.cat([mean[1:], torch.zeros(1, a, device=device)]).detach()
        return mean

    def act(self, score: Score, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """The first action ``(action_dim,)`` of ``plan``."""
        return self.plan(score, generator, device)[0]


class CEM(_GaussianPlanner):
    """Cross-entropy method: sample ``candidates`` sequences from N(mean, std), clip to the bounds, refit
    mean and std to the ``top_k`` best, ``iterations`` times; the plan is the final mean."""

    def __init__(self, action_dim: int, horizon: int = 12, candidates: int = 300, iterations: int = 5, top_k: int = 30,
                 **kwargs: Any) -> None:
        super().__init__(action_dim, horizon, candidates, iterations, **kwargs)
        check_positive(top_k=top_k)
        if top_k > candidates:
            raise UserError(f"top_k={top_k} is more than candidates={candidates}; choose top_k <= candidates")
        self.top_k = top_k

    @classmethod
    def planet(cls, action_dim: int, **kwargs: Any) -> CEM:
        """PlaNet's GPU setting: horizon 12, 1000 candidates, 10 iterations, top 100."""
        return cls(action_dim, **{**PLANET_SETTING, **kwargs})

    def _refit(self, candidates: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        elite = candidates[scores.topk(self.top_k).indices]
        return elite.mean(0), elite.std(0, unbiased=False)
