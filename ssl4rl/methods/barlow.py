"""Barlow Twins (Zbontar et al., 2021): the cross-correlation matrix between the embeddings of
two views, each standardised along the batch, is driven to the identity.

Faithful details: 3-layer projector (Linear, BN, ReLU twice, then a bias-free Linear); batch
standardisation with statistics over all processes (the gathered batch); loss
``sum (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2`` with the paper's lambda 0.0051 (the paper
finds the result robust to lambda; for much smaller projectors 1 / proj_dim is a common
choice); the online encoder is exported. Deviations for 32-84 px frames and short CPU runs:
projector 1024-1024-1024 (the paper: 8192), AdamW (``method.optimizer=lars`` as in the
paper), symmetric views without Gaussian blur or solarisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.barlow import barlow_twins_loss
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp


@dataclass
class BarlowConfig(MethodConfig):
    """Barlow Twins recipe for 32-84 px: AdamW lr 1e-3, batch 128, weight decay 1.5e-6, projector 1024x3."""

    name: str = recipe("name", "barlow")
    weight_decay: float = recipe("weight_decay", 1.5e-6)
    proj_hidden: int = setting(1024, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(1024, ge=1, le=MAX_WIDTH)
    lambd: float = setting(0.0051, ge=0)  # weight of the off-diagonal terms
    aug: ViewAug = field(default_factory=ViewAug)


class Barlow(Method):
    """Encoder + 3-layer projector trained with the Barlow Twins redundancy-reduction loss."""

    name = "barlow"
    Config = BarlowConfig
    pairs = True
    family = "non-contrastive"

    def __init__(self, encoder: Encoder, cfg: BarlowConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=3, bias_last=False)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, v2 = self.two_views(batch, self.cfg.aug)
        loss, terms = barlow_twins_loss(self.projector(self.embed(v1)), self.projector(self.embed(v2)), self.cfg.lambd)
        return loss, {"loss": loss.detach(), **terms}
