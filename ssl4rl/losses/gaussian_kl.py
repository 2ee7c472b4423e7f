"""KL divergence between diagonal Gaussians, with PlaNet's free nats (the RSSM's posterior-prior term)."""

from __future__ import annotations

import torch


def gaussian_kl(mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean_q, std_q) || N(mean_p, std_p))`` summed over the last dimension (one value per row)."""
    return (torch.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5).sum(-1)


def free_nats_kl(kl: torch.Tensor, free_nats: float) -> torch.Tensor:
    """The mean of ``kl``, not penalised below ``free_nats`` (averaged first, then clamped, as in Dreamer)."""
    return torch.clamp(kl.mean(), min=free_nats)
