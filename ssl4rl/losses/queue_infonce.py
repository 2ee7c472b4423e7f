"""MoCo's InfoNCE: each query against its own key (the positive) and a queue of negatives."""

from __future__ import annotations

import torch

from ssl4rl.losses.infonce import info_nce


def queue_info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE of ``query`` (N, D) with positive ``key`` (N, D) and negatives ``queue`` (K, D).

    The keys are ``[key; queue]`` with row i's positive at index i; the other rows of ``key``
    are masked out, so each query's logits are exactly MoCo's ``[q.k_i, q.queue] / T``.
    """
    n = query.shape[0]
    keys = torch.cat([key, queue.to(key.dtype)])
    exclude = torch.zeros(n, keys.shape[0], dtype=torch.bool, device=query.device)
    exclude[:, :n] = ~torch.eye(n, dtype=torch.bool, device=query.device)
    return info_nce(query, keys, torch.arange(n, device=query.device), temperature, exclude=exclude)
