"""Planning over discrete actions (e.g. the 20 actions of the block-pushing envs).

Same interface as the continuous planners: ``score(actions) -> (N,)`` with ``actions`` one-hot,
``(N, horizon, num_actions)`` float, higher is better. Plans are action indices ``(horizon,)``.

- ``CategoricalCEM``: CEM over one categorical distribution per time step, refit to the frequencies
  of the ``top_k`` best sequences (mixed with the previous distribution by ``smoothing``); the plan
  is the best-scoring sequence sampled in any iteration (exact for deterministic scores).
- ``exhaustive_search``: every one of the ``num_actions ** horizon`` sequences, scored in batches; exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl4rl.errors import UserError
from ssl4rl.planning.cem import Score, check_positive, check_rollout_memory, finite_scores

MAX_EXHAUSTIVE = 1_000_000  # sequences exhaustive_search will score (20 actions: horizon <= 4)


def one_hot(indices: torch.Tensor, num_actions: int) -> torch.Tensor:
    """Action indices (..., horizon) -> float one-hot (..., horizon, num_actions)."""
    return F.one_hot(indices, num_actions).float()


def all_sequences(num_actions: int, horizon: int) -> torch.Tensor:
    """Every index sequence, ``(num_actions ** horizon, horizon)`` long, in lexicographic order."""
    grids = torch.meshgrid(*[torch.arange(num_actions)] * horizon, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def exhaustive_search(score: Score, num_actions: int, horizon: int, batch_size: int = 8192,
                      device: str | torch.device = "cpu") -> tuple[torch.Tensor, float]:
    """The best index sequence ``(horizon,)`` and its score, over all ``num_actions ** horizon`` sequences
    (ties: the first in lexicographic order)."""
    check_positive(num_actions=num_actions, horizon=horizon, batch_size=batch_size)
    if num_actions**horizon > MAX_EXHAUSTIVE:
        raise UserError(f"exhaustive search over {num_actions}^{horizon} sequences is more than {MAX_EXHAUSTIVE:,}; "
                        "use a shorter horizon or CategoricalCEM")
    seqs = all_sequences(num_actions, horizon).to(device)
    best_score, best = float("-inf"), seqs[0]
    for chunk in seqs.split(batch_size):
        scores = finite_scores(score(one_hot(chunk, num_actions)), len(chunk))
        i = int(scores.argmax())
        if float(scores[i]) > best_score:
            best_score, best = float(scores[i]), chunk[i]
    return best, best_score


class CategoricalCEM:
    """CEM over per-step categorical distributions (start uniform)."""

    def __init__(self, num_actions: int, horizon: int = 5, candidates: int = 300, iterations: int = 5, top_k: int = 30,
                 smoothing: float = 0.1) -> None:
        check_positive(num_actions=num_actions, horizon=horizon, candidates=candidates, iterations=iterations, top_k=top_k)
        check_rollout_memory(candidates, horizon, num_actions, "one-hot action values")
        if top_k > candidates:
            raise UserError(f"top_k={top_k} is more than candidates={candidates}; choose top_k <= candidates")
        if not 0 <= smoothing < 1:
            raise UserError(f"smoothing={smoothing}: must be in [0, 1)")
        self.num_actions, self.horizon, self.candidates = num_actions, horizon, candidates
        self.iterations, self.top_k, self.smoothing = iterations, top_k, smoothing

    def plan(self, score: Score, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
        """The best index sequence ``(horizon,)`` found."""
        k, h, n = self.num_actions, self.horizon, self.candidates
        probs = torch.full((h, k), 1.0 / k)
        best_score, best = float("-inf"), torch.zeros(h, dtype=torch.long)
        for _ in range(self.iterations):
            idx = torch.multinomial(probs, n, replacement=True, generator=generator).t()  # (n, h)
            scores = finite_scores(score(one_hot(idx, k).to(device)), n).cpu()
            top = scores.topk(self.top_k).indices
            if float(scores[top[0]]) > best_score:
                best_score, best = float(scores[top[0]]), idx[top[0]].clone()
            freq = one_hot(idx[top], k).mean(0)
            probs = self.smoothing * probs + (1 - self.smoothing) * freq
        return best.to(device)

    def act(self, score: Score, generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> int:
        """The first action index of ``plan``."""
        return int(self.plan(score, generator, device)[0])
