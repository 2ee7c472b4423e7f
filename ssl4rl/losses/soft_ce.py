"""Cross-entropy against sparse soft targets (colorization's soft-encoded ab bins)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(
    logits: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, sample_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over rows of ``-sum_j weights[i, j] * log_softmax(logits[i])[index[i, j]]``.

    ``logits`` (M, Q); the target of row i puts mass ``weights[i]`` (M, k) on classes
    ``index[i]`` (M, k). ``sample_weight`` (M,) rescales each row (class rebalancing).
    """
    logp = F.log_softmax(logits.float(), dim=1).gather(1, index)
    per_row = -(weights * logp).sum(1)
    if sample_weight is not None:
        per_row = per_row * sample_weight
    return per_row.mean()
