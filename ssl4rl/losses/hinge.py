"""C-SWM's contrastive hinge loss over object-slot states (Kipf et al., ICLR 2020, Eq. 5).

States are (B, K, D): K object slots of D numbers. The energy of a pair of states is the
scaled squared Euclidean distance averaged over slots,

    d(z, z') = 1 / (2 sigma^2) * 1/K * sum_k ||z_k - z'_k||^2,

and the loss on a transition (z_t, a_t, z_{t+1}) with a negative state z~ is

    H = d(z_t + T(z_t, a_t), z_{t+1}) + max(0, margin - d(z~, z_{t+1})),

averaged over the batch: the predicted state is pulled onto the next encoding, and negative
states (in C-SWM: encodings of other samples of the batch) are pushed at least ``margin`` away.
"""

from __future__ import annotations

import torch


def state_energy(z: torch.Tensor, z_next: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """d(z, z') per sample: ``0.5 / sigma^2 * mean_k sum_d (z - z')^2`` for states (B, K, D) -> (B,)."""
    return (0.5 / sigma**2) * (z - z_next).square().sum(-1).mean(-1)


def hinge_loss(
    predicted: torch.Tensor, target: torch.Tensor, negative: torch.Tensor, margin: float = 1.0, sigma: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, positive term, negative term), each a batch mean, for states (B, K, D).

    ``predicted`` = z_t + T(z_t, a_t), ``target`` = z_{t+1}, ``negative`` = z~ (one negative state
    per sample); loss = mean d(predicted, target) + mean max(0, margin - d(negative, target)).
    """
    positive = state_energy(predicted, target, sigma).mean()
    negative_term = (margin - state_energy(negative, target, sigma)).clamp_min(0).mean()
    return positive + negative_term, positive, negative_term
