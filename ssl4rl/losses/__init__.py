"""Losses, one per file."""

from ssl4rl.losses.masked_mse import masked_patch_mse

__all__ = ["masked_patch_mse"]
