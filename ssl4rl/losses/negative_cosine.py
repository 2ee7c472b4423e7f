"""SimSiam's loss D(p, z): negative cosine similarity with a stop-gradient on the target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-cos(p, stopgrad(z))`` for (N, D) predictions ``p`` and targets ``z``;
    no gradient flows into ``z`` (SimSiam's D)."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()
