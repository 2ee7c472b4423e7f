"""CURL's contrastive loss: bilinear logits ``q W kᵀ`` and cross-entropy against the diagonal (Laskin et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bilinear_logits(query: torch.Tensor, keys: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``query`` (N, D) · ``w`` (D, D) · ``keys`` (M, D)ᵀ, each row shifted by its maximum (as CURL, for stability)."""
    logits = query @ w @ keys.t()
    return logits - logits.max(dim=1, keepdim=True).values.detach()


def bilinear_info_nce(query: torch.Tensor, keys: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each query against every key, its positive being the key of the same row."""
    return F.cross_entropy(bilinear_logits(query, keys, w), torch.arange(len(query), device=query.device))
