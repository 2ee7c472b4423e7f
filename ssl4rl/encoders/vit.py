"""A tiny timm Vision Transformer sized for 64-84 px frames.

Exposes the two halves MAE needs (``embed`` patches, run ``blocks`` on a token
subset) and several poolings for frozen features. Mean pooling discards *where*
things are, which control needs, so the default ``pool='cls+grid'`` keeps the
CLS token plus tokens average-pooled onto a coarse ``grid x grid`` map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from ssl4rl.encoders.base import Encoder, register_arch
from ssl4rl.errors import UserError

POOLS = ("cls", "mean", "cls+mean", "cls+grid")


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding (grid*grid, dim), as in MAE."""
    def one_axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gy, gx = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    emb = np.concatenate([one_axis(dim // 2, gy), one_axis(dim // 2, gx)], axis=1)
    return torch.from_numpy(emb).float()


@register_arch
class ViTEncoder(Encoder):
    """timm ``VisionTransformer`` (CLS token, fixed sin-cos positions) with a pooling head."""

    arch = "vit"

    def __init__(
        self,
        image_size: int = 64,
        patch_size: int = 8,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        pool: str = "cls+grid",
        grid: int = 2,
        **norm: Any,
    ) -> None:
        super().__init__(image_size, **norm)
        if pool not in POOLS:
            raise UserError(f"unknown ViT pool '{pool}'; valid: {', '.join(POOLS)}")
        if image_size % patch_size:
            raise UserError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if embed_dim % 4 or embed_dim % num_heads:
            raise UserError(f"ViT embed_dim {embed_dim} must be a multiple of 4 and of num_heads {num_heads}")
        self.patch_size, self.embed_dim, self.depth = patch_size, embed_dim, depth
        self.num_heads, self.mlp_ratio, self.pool, self.grid = num_heads, mlp_ratio, pool, grid
        self.tokens_per_side = image_size // patch_size
        if pool == "cls+grid" and self.tokens_per_side % grid:
            raise UserError(f"grid {grid} must divide the {self.tokens_per_side} tokens per side")
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            global_pool="",
        )
        pos = torch.cat([torch.zeros(1, embed_dim), sincos_pos_embed(embed_dim, self.tokens_per_side)])
        self.vit.pos_embed.data.copy_(pos.unsqueeze(0))
        self.vit.pos_embed.requires_grad_(False)
        self.feature_dim = {
            "cls": embed_dim,
            "mean": embed_dim,
            "cls+mean": 2 * embed_dim,
            "cls+grid": (1 + grid * grid) * embed_dim,
        }[pool]

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "pool": self.pool,
            "grid": self.grid,
        }

    @property
    def num_patches(self) -> int:
        return self.tokens_per_side**2

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> patch tokens with positions, (N, L, D), no CLS."""
        return self.vit.patch_embed(x) + self.vit.pos_embed[:, 1:]

    def blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend CLS to (N, l, D) tokens, run the transformer; returns (N, 1+l, D) normed."""
        cls = (self.vit.cls_token + self.vit.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        return self.vit.norm(self.vit.blocks(self.vit.norm_pre(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embed(x))
        cls, patches = h[:, 0], h[:, 1:]
        if self.pool == "cls":
            return cls
        if self.pool == "mean":
            return patches.mean(1)
        if self.pool == "cls+mean":
            return torch.cat([cls, patches.mean(1)], dim=1)
        n, s = x.shape[0], self.tokens_per_side
        fmap = patches.transpose(1, 2).reshape(n, self.embed_dim, s, s)
        pooled = F.adaptive_avg_pool2d(fmap, self.grid).flatten(1)
        return torch.cat([cls, pooled], dim=1)
