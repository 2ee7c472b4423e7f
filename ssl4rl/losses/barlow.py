"""Barlow Twins' loss (Zbontar et al., 2021): the cross-correlation of the two views'
batch-standardised embeddings is pulled to the identity (statistics over all processes)."""

from __future__ import annotations

import torch

from ssl4rl.parts.dist import gather


def _standardize(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Each dimension to zero mean, unit (biased) variance over the batch, as BatchNorm1d without affine."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def barlow_twins_loss(
    z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051, eps: float = 1e-5
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Embeddings (N, D) of two views -> (``on_diag + lambd * off_diag``, the detached terms).

    ``C = std(z1)^T std(z2) / N_all`` over the batch gathered from every process;
    ``on_diag = sum_i (1 - C_ii)^2``, ``off_diag = sum_{i != j} C_ij^2``.
    """
    z1, z2 = gather(z1), gather(z2)
    c = _standardize(z1, eps).t() @ _standardize(z2, eps) / z1.shape[0]
    diag = torch.diagonal(c)
    on_diag = (1 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    loss = on_diag + lambd * off_diag
    return loss, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()}
