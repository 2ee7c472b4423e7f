"""SimCLR (Chen et al., 2020): two augmented views, a nonlinear projection head, and NT-Xent over
the 2N views of a batch (negatives gathered across processes under DDP)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses import nt_xent
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp


@dataclass
class SimCLRConfig(MethodConfig):
    """SimCLR recipe for 32-84 px: crops of 20-100% area, flip, colour jitter, grayscale; no blur
    (small images); temperature 0.2; AdamW for short CPU runs (``method.optimizer=lars`` as in the paper)."""

    name: str = recipe("name", "simclr")
    temperature: float = setting(0.2, gt=0)
    proj_hidden: int = setting(512, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(128, ge=1, le=MAX_WIDTH)
    aug: ViewAug = field(default_factory=ViewAug)


class SimCLR(Method):
    """Encoder + 2-layer projection head trained with NT-Xent."""

    name = "simclr"
    Config = SimCLRConfig
    pairs = True

    def __init__(self, encoder: Encoder, cfg: SimCLRConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=2)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, v2 = self.two_views(batch, self.cfg.aug)
        z1, z2 = self.projector(self.embed(v1)), self.projector(self.embed(v2))
        loss = nt_xent(z1, z2, self.cfg.temperature)
        return loss, {"loss": loss.detach()}
