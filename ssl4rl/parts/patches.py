"""Patches and token masks: patchify / unpatchify, random token masking, token gathering."""

from __future__ import annotations

import torch


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, patch_size**2 * C), patches in row-major order."""
    n, c, h, w = images.shape
    p = patch_size
    x = images.reshape(n, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of ``patchify`` for square images."""
    n, length, _ = patches.shape
    p, s = patch_size, int(round(length**0.5))
    x = patches.reshape(n, s, s, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, channels, s * p, s * p)


def random_token_mask(
    n: int, length: int, mask_ratio: float, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking of ``round(mask_ratio * length)`` tokens.

    Returns ``keep`` (N, n_keep) indices of visible tokens, ``mask`` (N, L) bool
    with True = hidden, and ``restore`` (N, L) indices that undo the shuffle.
    """
    n_keep = max(1, length - int(round(mask_ratio * length)))
    noise = torch.rand(n, length, generator=generator, device="cpu").to(device)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    keep = shuffle[:, :n_keep]
    mask = torch.ones(n, length, dtype=torch.bool, device=device)
    mask.scatter_(1, keep, False)
    return keep, mask, restore


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select tokens (N, L, D) at per-sample indices (N, l) -> (N, l, D)."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
