"""InfoNCE, written once: SimCLR's NT-Xent, MoCo (queue negatives), CPC and CURL-style
losses are all cross-entropy over similarities with one positive per row."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl4rl.parts.dist import gather, rank_offset


def info_nce(
    query: torch.Tensor,
    keys: torch.Tensor,
    positive_index: torch.Tensor,
    temperature: float = 0.1,
    normalize: bool = True,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``query`` (N, D) against ``keys`` (M, D) where row i's positive is
    ``keys[positive_index[i]]`` and every other key is a negative.

    ``exclude`` (N, M) bool masks out keys that are neither (e.g. a view against itself).
    """
    if normalize:
        query, keys = F.normalize(query, dim=-1), F.normalize(keys, dim=-1)
    logits = query @ keys.t() / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.cross_entropy(logits, positive_index)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent over the 2N views of N pairs (z1[i], z2[i]), negatives gathered
    from every process: each view's positive is its partner, the other 2N-2 views are negatives."""
    n = z1.shape[0]
    q = torch.cat([z1, z2])  # local queries (2n, D)
    k1, k2 = gather(z1), gather(z2)
    keys = torch.cat([k1, k2])  # global keys (2Ng, D)
    ng = k1.shape[0]
    local = torch.arange(n, device=z1.device) + rank_offset(n)
    self_index = torch.cat([local, local + ng])
    positive = torch.cat([local + ng, local])
    exclude = torch.zeros(2 * n, 2 * ng, dtype=torch.bool, device=z1.device)
    exclude[torch.arange(2 * n, device=z1.device), self_index] = True
    return info_nce(q, keys, positive, temperature, exclude=exclude)
