"""SimSiam (Chen & He, 2021): two views through one encoder and projector; a predictor on each
branch regresses the other branch's projection under a stop-gradient (no momentum teacher,
no negatives).

Faithful details: 3-layer projector with BN on every layer including the output (affine-free);
bottleneck predictor (Linear, BN, ReLU, Linear; hidden = output / 4); symmetric loss
``D(p1, z2) / 2 + D(p2, z1) / 2`` with ``D = -cos(p, stopgrad(z))``; SGD (momentum 0.9,
weight decay 1e-4) with the predictor's lr fixed (not decayed) while the rest follows the
cosine schedule; MoCo v2 views; the encoder is exported. Deviations for 32-84 px frames and
short CPU runs: narrower heads (256, predictor 64), no Gaussian blur, crops of 20-100% area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.negative_cosine import negative_cosine
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp


@dataclass
class SimSiamConfig(MethodConfig):
    """SimSiam recipe for 32-84 px: SGD lr 0.05 (fixed for the predictor), heads 256 / 64."""

    name: str = recipe("name", "simsiam")
    optimizer: str = recipe("optimizer", "sgd")
    lr: float = recipe("lr", 0.05)
    weight_decay: float = recipe("weight_decay", 1e-4)
    proj_dim: int = setting(256, ge=1, le=MAX_WIDTH)  # projector hidden and output width
    pred_hidden: int = setting(64, ge=1, le=MAX_WIDTH)  # predictor bottleneck
    aug: ViewAug = field(default_factory=lambda: ViewAug(saturation=0.4))


class SimSiam(Method):
    """Encoder + projector + predictor; stop-gradient on the target branch."""

    name = "simsiam"
    Config = SimSiamConfig
    pairs = True
    family = "non-contrastive"

    def __init__(self, encoder: Encoder, cfg: SimSiamConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_dim, cfg.proj_dim, layers=3, last_norm=True)
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, layers=2)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, v2 = self.two_views(batch, self.cfg.aug)
        z1, z2 = self.projector(self.embed(v1)), self.projector(self.embed(v2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
        return loss, {"loss": loss.detach()}

    def param_groups(self) -> list[dict[str, Any]]:
        """The base groups, each split so that the predictor's parameters keep a fixed lr."""
        predictor = {id(p) for p in self.predictor.parameters()}
        groups = []
        for g in super().param_groups():
            groups.append(dict(g, params=[p for p in g["params"] if id(p) not in predictor]))
            groups.append(dict(g, params=[p for p in g["params"] if id(p) in predictor], fixed_lr=True))
        return groups
