"""CPC v2 (Hénaff et al., 2020; after van den Oord et al., 2018): predict the embeddings of image
patches below from a context that has only seen the rows above.

Faithful details: each image is cut into an overlapping grid of square patches (50% overlap:
``patch_size`` px patches every ``patch_stride`` px, the grid centred; 64 px -> 7 x 7 patches of
16 px, 32 px -> 3 x 3); every patch goes through the shared encoder on its own (``embed``, which
resizes patches for fixed-size encoders) and gets its own augmentation (colour jitter, grayscale
and a small spatial jitter per patch, as CPC v2's patch-wise augmentation); a PixelCNN-style
context network of row-causal residual convolutions turns the grid of patch embeddings into
contexts ``c[i, j]`` that depend only on rows ``<= i``; for each offset ``k = 1..K`` a linear map
``W_k`` (a 1x1 conv) predicts the embedding ``k`` rows below, scored by the log-bilinear
``z^T W_k c`` against every patch embedding of the batch (of every image, from every process),
the true patch being the positive: InfoNCE (``info_nce`` without normalisation or temperature).

Deliberate deviations: the context network is 3 residual blocks (CPC v2 uses a deeper
PixelCNN), predictions go downwards only, and AdamW for short CPU runs. The exported encoder was
trained on patches and is applied to whole frames downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.losses.infonce import info_nce
from ssl4rl.methods.base import MAX_CHANNELS, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.dist import gather, rank_offset


def grid_size(side: int, patch_size: int, stride: int) -> int:
    """Patches along one image side of ``side`` px."""
    return (side - patch_size) // stride + 1 if side >= patch_size else 0


def patch_grid(x: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Images (N, C, H, W) -> overlapping patches (N, gh, gw, C, patch_size, patch_size).

    Patch ``(i, j)`` starts at pixel ``(top + i * stride, left + j * stride)``, where the grid
    ``(top, left)`` offset centres it in the image (left-over pixels split between the sides).
    """
    h, w = x.shape[-2:]
    gh, gw = grid_size(h, patch_size, stride), grid_size(w, patch_size, stride)
    if gh < 2 or gw < 1:
        raise UserError(
            f"cpc: a {h}x{w} image holds a {gh}x{gw} grid of {patch_size} px patches (stride {stride}); "
            "CPC needs at least 2 rows: lower method.patch_size / method.patch_stride or use larger images"
        )
    top = (h - patch_size - (gh - 1) * stride) // 2
    left = (w - patch_size - (gw - 1) * stride) // 2
    x = x[..., top : top + patch_size + (gh - 1) * stride, left : left + patch_size + (gw - 1) * stride]
    return x.unfold(2, patch_size, stride).unfold(3, patch_size, stride).permute(0, 2, 3, 1, 4, 5)


class RowCausalConv(nn.Conv2d):
    """A ``kernel x kernel`` convolution whose output row ``i`` sees input rows ``i-kernel+1..i``
    only (zero padding above, none below; centred horizontally)."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__(channels, channels, kernel)
        self.pad = (kernel // 2, (kernel - 1) // 2, kernel - 1, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, self.pad))


class ContextNet(nn.Module):
    """PixelCNN-style context network over a grid of embeddings: a 1x1 input projection, then
    residual blocks of two ReLU + row-causal convolutions. Context row ``i`` depends on rows <= i."""

    def __init__(self, in_dim: int, dim: int, blocks: int = 3, kernel: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, dim, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), RowCausalConv(dim, kernel), nn.ReLU(), RowCausalConv(dim, kernel)) for _ in range(blocks)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, in_dim, gh, gw) -> contexts (N, dim, gh, gw)."""
        c = self.proj(z)
        for block in self.blocks:
            c = c + block(c)
        return c


@dataclass
class CPCConfig(MethodConfig):
    """CPC v2 recipe for 32-84 px: 16 px patches every 8 px, 3 rows ahead, patch-wise augmentation."""

    name: str = recipe("name", "cpc")
    batch_size: int = recipe("batch_size", 32)
    patch_size: int = setting(16, ge=1, le=1024)
    patch_stride: int = setting(8, ge=1, le=1024)  # at most patch_size (patches overlap or touch)
    pred_steps: int = setting(3, ge=1, le=64)  # rows ahead to predict (clipped to the grid)
    context_dim: int = setting(128, ge=1, le=MAX_CHANNELS)
    context_blocks: int = setting(3, ge=0, le=64)
    aug: ViewAug = field(default_factory=lambda: ViewAug(crop_scale=(1.0, 1.0), flip=0.0, shift_pad=2))

    def check(self) -> None:
        """Patches overlap or touch: ``patch_stride <= patch_size``."""
        if self.patch_stride > self.patch_size:
            raise UserError(f"method.patch_stride={self.patch_stride} is larger than method.patch_size={self.patch_size}, "
                            "which skips pixels between patches; use patch_stride <= patch_size, e.g. half of it")


class CPC(Method):
    """Encoder on patches + row-causal context network + one linear predictor per row offset."""

    name = "cpc"
    Config = CPCConfig
    family = "contrastive"

    def __init__(self, encoder: Encoder, cfg: CPCConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        rows = grid_size(encoder.image_size, cfg.patch_size, cfg.patch_stride)
        if rows < 2:
            raise UserError(
                f"method=cpc: {encoder.image_size} px images hold {rows} row(s) of {cfg.patch_size} px patches; "
                "lower method.patch_size (and method.patch_stride) or use larger images"
            )
        d = encoder.feature_dim
        self.context = ContextNet(d, cfg.context_dim, cfg.context_blocks)
        self.predictors = nn.ModuleList(nn.Conv2d(cfg.context_dim, d, 1) for _ in range(min(cfg.pred_steps, rows - 1)))

    def patch_embeddings(self, x01: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> augmented patch embeddings as a grid (N, D, gh, gw)."""
        patches = patch_grid(x01, self.cfg.patch_size, self.cfg.patch_stride)
        n, gh, gw = patches.shape[:3]
        flat = apply_view(patches.reshape(n * gh * gw, *patches.shape[3:]), self.cfg.aug, self.generator)
        return self.embed(flat).reshape(n, gh, gw, -1).permute(0, 3, 1, 2)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        z = self.patch_embeddings(batch.images.float() / 255)
        n, d, gh, gw = z.shape
        c = self.context(z)
        keys = z.permute(0, 2, 3, 1).reshape(n * gh * gw, d)  # patch (b, i, j) is row (b * gh + i) * gw + j
        key_id = torch.arange(n * gh * gw, device=z.device).view(n, gh, gw) + rank_offset(n * gh * gw)
        queries, positives = [], []
        for k, predictor in enumerate(self.predictors[: gh - 1], start=1):
            queries.append(predictor(c[:, :, : gh - k]).permute(0, 2, 3, 1).reshape(-1, d))
            positives.append(key_id[:, k:].reshape(-1))
        loss = info_nce(torch.cat(queries), gather(keys), torch.cat(positives), temperature=1.0, normalize=False)
        return loss, {"loss": loss.detach()}
