"""MAE (He et al., 2022): mask 75% of patches, encode the visible ones, reconstruct the rest.

The encoder sees only the visible patches; a light transformer decoder fills in
mask tokens; the loss is MSE on the hidden patches only, against per-patch
normalised pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ssl4rl.augment import random_shift
from ssl4rl.encoders import ViTEncoder
from ssl4rl.encoders.vit import sincos_pos_embed
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.losses import masked_patch_mse
from ssl4rl.methods.base import MAX_CHANNELS, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.patches import gather_tokens, patchify, random_token_mask, unpatchify


@dataclass
class MAEConfig(MethodConfig):
    """MAE recipe for 64 px frames: AdamW, lr 1e-3, batch 128, DrQ random shift as the only augmentation."""

    name: str = recipe("name", "mae")
    mask_ratio: float = setting(0.75, gt=0, lt=1)  # fraction of the patches hidden
    decoder_dim: int = setting(64, ge=4, le=MAX_CHANNELS)  # a multiple of 4 and of decoder_heads
    decoder_depth: int = setting(2, ge=1, le=64)
    decoder_heads: int = setting(4, ge=1, le=256)
    norm_pix_loss: bool = True
    shift_pad: int = setting(4, ge=0, le=64)  # DrQ-style random shift (0 = off)

    def check(self) -> None:
        """The decoder's width splits into heads and into the 4 parts of its sin-cos positions."""
        if self.decoder_dim % 4 or self.decoder_dim % self.decoder_heads:
            raise UserError(f"method.decoder_dim={self.decoder_dim} must be a multiple of 4 and of "
                            f"method.decoder_heads={self.decoder_heads}, e.g. decoder_dim=64 decoder_heads=4")


class MAE(Method):
    """Masked autoencoder over a ``ViTEncoder``."""

    name = "mae"
    Config = MAEConfig
    needs_arch = ("vit",)

    def __init__(self, encoder: ViTEncoder, cfg: MAEConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.mask_ratio, self.norm_pix_loss = cfg.mask_ratio, cfg.norm_pix_loss
        decoder_dim, decoder_depth, decoder_heads = cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads
        p, length = encoder.patch_size, encoder.num_patches
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        pos = torch.cat([torch.zeros(1, decoder_dim), sincos_pos_embed(decoder_dim, encoder.tokens_per_side)])
        self.register_buffer("decoder_pos", pos.unsqueeze(0))
        self.decoder = nn.Sequential(*[Block(decoder_dim, decoder_heads, 4.0, qkv_bias=True) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, p * p * 3)
        self.length = length

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (N,3,S,S) -> (loss, predicted patches (N,L,P), mask (N,L) True=hidden)."""
        enc: ViTEncoder = self.encoder  # type: ignore[assignment]
        tokens = enc.embed(images)
        keep, mask, restore = random_token_mask(
            tokens.shape[0], self.length, self.mask_ratio, tokens.device, self.generator
        )
        latent = enc.blocks(gather_tokens(tokens, keep))  # encoder sees visible patches only
        x = self.decoder_embed(latent)
        cls, visible = x[:, :1], x[:, 1:]
        n_masked = self.length - visible.shape[1]
        full = torch.cat([visible, self.mask_token.expand(x.shape[0], n_masked, -1)], dim=1)
        full = gather_tokens(full, restore)  # back to the original patch order
        x = torch.cat([cls, full], dim=1) + self.decoder_pos
        pred = self.decoder_pred(self.decoder_norm(self.decoder(x)))[:, 1:]
        target = patchify(images, enc.patch_size)
        loss = masked_patch_mse(pred, target, mask, norm_pix=self.norm_pix_loss)
        return loss, pred, mask

    def inputs(self, batch: Batch) -> torch.Tensor:
        """uint8 batch -> shifted, normalised images."""
        x = random_shift(batch.images.float() / 255, self.cfg.shift_pad, self.generator)
        return self.encoder.normalize(x)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, _, mask = self(self.inputs(batch))
        return loss, {"loss": loss.detach(), "mask_ratio": mask.float().mean()}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input, reconstruction with visible patches pasted back), both as images."""
        enc: ViTEncoder = self.encoder  # type: ignore[assignment]
        _, pred, mask = self(images)
        target = patchify(images, enc.patch_size)
        if self.norm_pix_loss:  # undo the per-patch normalisation using the true patch stats
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            pred = pred * (var + 1e-6).sqrt() + mean
        m = mask.unsqueeze(-1).to(pred.dtype)
        masked = unpatchify(target * (1 - m), enc.patch_size)
        recon = unpatchify(pred * m + target * (1 - m), enc.patch_size)
        return masked, recon

    def save_figures(self, batch: Batch, folder: Path, step: int) -> list[Path]:
        from ssl4rl.viz import save_image_rows

        was_training = self.training
        self.eval()
        images = self.encoder.preprocess(batch.images)
        masked, recon = self.reconstruct(images)
        self.train(was_training)
        enc = self.encoder
        denorm = lambda x: (x * enc.std + enc.mean).clamp(0, 1)
        rows = {"original": denorm(images), "masked": denorm(masked) * (masked != 0), "reconstructed": denorm(recon)}
        path = folder / f"recon_step{step:07d}.png"
        save_image_rows(path, rows, title=f"MAE reconstruction, step {step}")
        return [path]
