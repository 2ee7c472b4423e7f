"""SwAV's loss (Caron et al., 2020): Sinkhorn-Knopp codes of the global views, predicted by
every other view (swapped prediction), with the Sinkhorn sums taken over all processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ssl4rl.losses.dino import cross_view_cross_entropy
from ssl4rl.parts.dist import all_reduce_mean, gather_nograd, world_size


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over processes (itself in one process)."""
    return all_reduce_mean(x) * world_size()


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """Soft equipartitioned codes (B, K) for prototype scores (B, K) (local rows of a batch
    spread over processes): ``Q = exp(scores / epsilon)`` alternately rescaled so that each
    prototype gets total mass B_all / K and each sample mass 1 (the last rescaling, so rows
    sum to 1 exactly). Computed in float32 without gradients."""
    s = scores.detach().float()
    top = gather_nograd(s.max().reshape(1)).max()  # one shift for all processes: exp stays finite
    q = torch.exp((s - top) / epsilon).t()  # (K, B)
    k = q.shape[0]
    b = _global_sum(torch.tensor(float(q.shape[1]), device=q.device))
    q /= _global_sum(q.sum())
    for _ in range(iters):
        q /= _global_sum(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


def swav_loss(scores: Sequence[torch.Tensor], codes: Sequence[torch.Tensor], temperature: float = 0.1) -> torch.Tensor:
    """Swapped prediction: the codes (N, K) of view ``i`` (the first ``len(codes)`` views) are
    predicted from the prototype scores (N, K) of every other view at ``temperature``."""
    return cross_view_cross_entropy(codes, scores, temperature)
