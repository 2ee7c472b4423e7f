"""MAE (He et al., 2022): mask 75% of patches, encode the visible ones, reconstruct the rest.

The encoder sees only the visible patches; a light transformer decoder fills in
mask tokens; the loss is MSE on the hidden patches only, against per-patch
normalised pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ssl4rl.encoders import ViTEncoder
from ssl4rl.encoders.vit import sincos_pos_embed
from ssl4rl.losses import masked_patch_mse
from ssl4rl.ssl.base import SSLMethod
from ssl4rl.ssl.utils import gather_tokens, patchify, random_token_mask, unpatchify


class MAE(SSLMethod):
    """Masked autoencoder over a ``ViTEncoder``."""

    name = "mae"
    needs_arch = "vit"

    def __init__(
        self,
        encoder: ViTEncoder,
        mask_ratio: float = 0.75,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(encoder)
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.decoder_dim, self.decoder_depth, self.decoder_heads = decoder_dim, decoder_depth, decoder_heads
        self.generator = generator
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

    def hparams(self) -> dict[str, Any]:
        return {
            "mask_ratio": self.mask_ratio,
            "decoder_dim": self.decoder_dim,
            "decoder_depth": self.decoder_depth,
            "decoder_heads": self.decoder_heads,
            "norm_pix_loss": self.norm_pix_loss,
        }

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

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, _, mask = self(images)
        return loss, {"loss": loss.item(), "mask_ratio": mask.float().mean().item()}

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

    def save_figures(self, images: torch.Tensor, folder: Path, step: int) -> list[Path]:
        from ssl4rl.viz import save_image_rows

        was_training = self.training
        self.eval()
        masked, recon = self.reconstruct(images)
        self.train(was_training)
        enc = self.encoder
        denorm = lambda x: (x * enc.std + enc.mean).clamp(0, 1)  # noqa: E731
        rows = {"original": denorm(images), "masked": denorm(masked) * (masked != 0), "reconstructed": denorm(recon)}
        path = folder / f"recon_step{step:07d}.png"
        save_image_rows(path, rows, title=f"MAE reconstruction, step {step}")
        return [path]
