"""A tiny timm Vision Transformer sized for 64-84 px frames.

Exposes the two halves MAE needs (``embed`` patches, run ``blocks`` on a token
subset) and several poolings for frozen features. Mean pooling discards *where*
things are, which control needs, so the default ``pool='cls+grid'`` keeps the
CLS token plus tokens average-pooled onto a coarse ``grid x grid`` map.

Inputs of other sizes (multiples of ``patch_size``, e.g. small DINO crops) work:
positions stay fixed sin-cos, recomputed exactly for the new token grid with
each token placed at the centre of the image area it covers, measured on the
default grid (what interpolating the position table does, without its error).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from ssl4rl.encoders.base import MAX_TOKENS, Encoder, EncoderConfig, register_arch
from ssl4rl.errors import UserError
from ssl4rl.fields import setting, validate

POOLS = ("cls", "mean", "cls+mean", "cls+grid")


@dataclass
class ViTConfig(EncoderConfig):
    """``ViTEncoder``'s kwargs."""

    image_size: int = setting(64, ge=16, le=1024)
    patch_size: int = setting(8, ge=1, le=1024)  # divides image_size
    embed_dim: int = setting(128, ge=4, le=8192)  # a multiple of 4 and of num_heads
    depth: int = setting(4, ge=1, le=64)
    num_heads: int = setting(4, ge=1, le=256)
    mlp_ratio: float = setting(4.0, gt=0, le=16)
    pool: str = setting("cls+grid", choices=POOLS)
    grid: int = setting(2, ge=1, le=64)  # divides the tokens per side (pool=cls+grid)

    def check(self) -> None:
        """Patches tile the image, at most ``MAX_TOKENS`` of them; heads and sin-cos positions split the width."""
        side = self.image_size // self.patch_size
        if self.image_size % self.patch_size:
            fit = max(d for d in range(1, self.patch_size) if self.image_size % d == 0)
            raise UserError(f"patch_size={self.patch_size} does not divide image_size={self.image_size}; "
                            f"use a divisor of it, e.g. patch_size={fit}")
        if side * side > MAX_TOKENS:
            raise UserError(f"patch_size={self.patch_size} cuts image_size={self.image_size} into {side * side} patches, "
                            f"more than {MAX_TOKENS}; use larger patches")
        if self.embed_dim % 4 or self.embed_dim % self.num_heads:
            raise UserError(f"embed_dim={self.embed_dim} must be a multiple of 4 and of num_heads={self.num_heads}, "
                            "e.g. embed_dim=128 num_heads=4")
        if self.pool == "cls+grid" and side % self.grid:
            raise UserError(f"grid={self.grid} must divide the {side} tokens per side (image_size={self.image_size} / "
                            f"patch_size={self.patch_size}) with pool=cls+grid")


def sincos_pos_embed(dim: int, grid: int | tuple[int, int], span: int | None = None) -> torch.Tensor:
    """Fixed 2D sine-cosine position embedding (h*w, dim), as in MAE.

    ``grid`` is tokens per side or ``(h, w)``. Without ``span`` token ``i`` sits at
    position ``i``; with ``span`` the n tokens of an axis spread over a grid of
    ``span`` tokens, token ``i`` at ``(i + 0.5) * span / n - 0.5`` (n == span gives ``i``).
    """
    def axis(n: int) -> np.ndarray:
        pos = np.arange(n, dtype=np.float64)
        return pos if span is None else (pos + 0.5) * span / n - 0.5

    def one_axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    h, w = (grid, grid) if isinstance(grid, int) else grid
    gy, gx = np.meshgrid(axis(h), axis(w), indexing="ij")
    emb = np.concatenate([one_axis(dim // 2, gy), one_axis(dim // 2, gx)], axis=1)
    return torch.from_numpy(emb).float()


@lru_cache(maxsize=32)
def _resized_pos_embed(dim: int, h: int, w: int, span: int) -> torch.Tensor:
    """Cached (1, h*w, dim) positions of an h x w token grid over a ``span``-token image."""
    return sincos_pos_embed(dim, (h, w), span).unsqueeze(0)


@register_arch
class ViTEncoder(Encoder):
    """timm ``VisionTransformer`` (CLS token, fixed sin-cos positions) with a pooling head.

    ``num_patches`` and ``tokens_per_side`` refer to the default ``image_size``.
    """

    arch = "vit"
    Config = ViTConfig
    dynamic_size = True

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
        validate(ViTConfig(image_size, **norm, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio, pool=pool, grid=grid))
        super().__init__(image_size, **norm)
        self.patch_size, self.embed_dim, self.depth = patch_size, embed_dim, depth
        self.num_heads, self.mlp_ratio, self.pool, self.grid = num_heads, mlp_ratio, pool, grid
        self.tokens_per_side = image_size // patch_size
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
        )
        fixed = sincos_pos_embed(embed_dim, self.tokens_per_side).to(torch.get_default_device())  # meta device too
        pos = torch.cat([torch.zeros(1, embed_dim), fixed])
        self.vit.pos_embed.data.copy_(pos.unsqueeze(0))
        self.vit.pos_embed.requires_grad_(False)
        self.feature_dim = {
            "cls": embed_dim,
            "mean": embed_dim,
            "cls+mean": 2 * embed_dim,
            "cls+grid": (1 + grid * grid) * embed_dim,
        }[pool]
        self.map_dim = embed_dim

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

    def token_grid(self, x: torch.Tensor) -> tuple[int, int]:
        """Token grid (h, w) of images ``x``; UserError unless both sides are multiples of the patch."""
        height, width = x.shape[-2:]
        p = self.patch_size
        if height % p or width % p:
            raise UserError(
                f"ViT input {height}x{width} is not a multiple of patch_size {p}; crop or resize to a multiple of {p}"
            )
        return height // p, width // p

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> patch tokens with positions, (N, L, D), no CLS."""
        h, w = self.token_grid(x)
        tokens = self.vit.patch_embed(x).flatten(1, 2)  # NHWC -> (N, L, D)
        pos = self.vit.pos_embed[:, 1:]
        if (h, w) != (self.tokens_per_side, self.tokens_per_side):
            pos = _resized_pos_embed(self.embed_dim, h, w, self.tokens_per_side).to(pos.device, pos.dtype)
        return tokens + pos

    def blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend CLS to (N, l, D) tokens, run the transformer; returns (N, 1+l, D) normed."""
        cls = (self.vit.cls_token + self.vit.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        return self.vit.norm(self.vit.blocks(self.vit.norm_pre(x)))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> all tokens after the final norm, (N, 1+L, D), CLS first."""
        return self.blocks(self.embed(x))

    def _patch_map(self, patches: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens (N, L, D) of images ``x`` as a map (N, D, h, w)."""
        h, w = self.token_grid(x)
        return patches.transpose(1, 2).reshape(x.shape[0], self.embed_dim, h, w)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self._patch_map(self.forward_tokens(x)[:, 1:], x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_tokens(x)
        cls, patches = tokens[:, 0], tokens[:, 1:]
        if self.pool == "cls":
            return cls
        if self.pool == "mean":
            return patches.mean(1)
        if self.pool == "cls+mean":
            return torch.cat([cls, patches.mean(1)], dim=1)
        pooled = F.adaptive_avg_pool2d(self._patch_map(patches, x), self.grid).flatten(1)
        return torch.cat([cls, pooled], dim=1)
