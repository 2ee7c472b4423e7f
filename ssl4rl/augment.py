"""Image augmentations as small composable parts (operate on float (N,C,H,W) batches)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ random shift: replicate-pad by ``pad`` then crop back at a random offset per image."""
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (oy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1)
    cols = (ox.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w)
    idx = rows * padded.shape[-1] + cols  # (n,1,h,w) flat indices into the padded image
    flat = padded.flatten(2)
    return flat.gather(2, idx.expand(n, x.shape[1], h, w).flatten(2)).view(n, x.shape[1], h, w)
