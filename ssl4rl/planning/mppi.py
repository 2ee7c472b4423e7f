"""Model-predictive path integral control (MPPI) over continuous action sequences.

Like CEM (``ssl4rl.planning.cem``: same ``score(actions) -> (N,)`` interface, bounds, warm start,
generator), but every candidate counts: the new mean and std are averages weighted by
``softmax(score / temperature)`` (Williams et al., 2017; the form TD-MPC uses), optionally over the
``top_k`` best only. A low temperature approaches picking the best candidate; a high one, the plain mean.
"""

from __future__ import annotations

from typing import Any

import torch

from ssl4rl.errors import UserError
from ssl4rl.planning.cem import _GaussianPlanner, check_positive


class MPPI(_GaussianPlanner):
    """Exponentially weighted averaging of sampled action sequences, ``iterations`` refits."""

    def __init__(self, action_dim: int, horizon: int = 12, candidates: int = 300, iterations: int = 5,
                 temperature: float = 1.0, top_k: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("min_std", 0.05)
        super().__init__(action_dim, horizon, candidates, iterations, **kwargs)
        check_positive(temperature=temperature)
        if top_k < 0 or top_k > candidates:
            raise UserError(f"top_k={top_k}: must be 0 (all candidates) up to candidates={candidates}")
        self.temperature, self.top_k = temperature, top_k

    def _refit(self, candidates: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.top_k:
            keep = scores.topk(self.top_k).indices
            candidates, scores = candidates[keep], scores[keep]
        w = torch.softmax(scores / self.temperature, 0)[:, None, None]
        mean = (w * candidates).sum(0)
        std = (w * (candidates - mean) ** 2).sum(0).sqrt()
        return mean, std
