"""Per-pixel weighted squared error (the context encoder's masked reconstruction loss)."""

from __future__ import annotations

import torch


def weighted_l2(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(weight * (pred - target)^2) / (C * sum(weight))`` over images (N, C, H, W).

    ``weight`` (N, 1, H, W) is zero where pixels do not count; with a 0/1 mask this is the
    mean squared error over the masked pixels.
    """
    sq = (pred.float() - target.float()).square().sum(1, keepdim=True)
    return (weight * sq).sum() / (pred.shape[1] * weight.sum()).clamp_min(1e-8)
