"""Losses, one per file; each is a pure function of embeddings (no parameters, no state)."""

from ssl4rl.losses.bilinear import bilinear_info_nce, bilinear_logits
from ssl4rl.losses.infonce import info_nce, nt_xent
from ssl4rl.losses.masked_mse import masked_patch_mse

__all__ = ["bilinear_info_nce", "bilinear_logits", "info_nce", "masked_patch_mse", "nt_xent"]
