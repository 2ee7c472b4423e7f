"""Mean squared error on masked patches only (the MAE reconstruction loss)."""

from __future__ import annotations

import torch


def masked_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """MSE between predicted and target patches (N, L, P), averaged over hidden patches.

    ``mask`` is (N, L) bool, True where the patch was hidden from the encoder.
    With ``norm_pix`` each target patch is normalised by its own mean and std.
    """
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)
