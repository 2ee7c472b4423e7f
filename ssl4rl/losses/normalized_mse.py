"""BYOL's loss: mean squared error between L2-normalised prediction and target, 2 - 2 cos."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalized_mse(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)`` for (N, D) predictions and targets."""
    return (2 - 2 * F.cosine_similarity(p, z, dim=-1)).mean()
