"""VICReg's loss (Bardes et al., 2022): invariance (MSE between the views), variance (hinge on
each dimension's standard deviation) and covariance (squared off-diagonal covariances), with
batch statistics over all processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl4rl.parts.dist import gather


def _variance(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """Mean over dimensions of ``relu(gamma - sqrt(var + eps))`` (unbiased variance over the batch)."""
    return F.relu(gamma - torch.sqrt(z.var(0) + eps)).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of the (unbiased) covariance matrix, divided by D."""
    z = z - z.mean(0)
    cov = z.t() @ z / (z.shape[0] - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings (N, D) of two views -> (weighted loss, the detached terms).

    ``invariance = mean((z1 - z2)^2)``; ``variance = (v(z1) + v(z2)) / 2``; ``covariance =
    c(z1) + c(z2)``, all over the batch gathered from every process.
    """
    z1, z2 = gather(z1), gather(z2)
    invariance = F.mse_loss(z1, z2)
    variance = (_variance(z1, gamma, eps) + _variance(z2, gamma, eps)) / 2
    covariance = _covariance(z1) + _covariance(z2)
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    terms = {"invariance": invariance.detach(), "variance": variance.detach(), "covariance": covariance.detach()}
    return loss, terms
