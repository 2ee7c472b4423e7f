"""BYOL (Grill et al., 2020): an online network (encoder, projector, predictor) predicts the
projection of a target network (encoder, projector) on the other view; the target is an EMA of
the online network and gets no gradient.

Faithful details: 2-layer projector and predictor (Linear, BN, ReLU, Linear); symmetric loss
``L(p1, z2) + L(p2, z1)`` with ``L = 2 - 2 cos`` (normalised MSE); target momentum on BYOL's
cosine schedule from 0.996 (the paper's base) to 1 over the run's steps (``tau_k`` for training step ``k``), applied
in ``after_step`` only; asymmetric views (solarize only on the second view); the online encoder
is exported. Deviations for 32-84 px frames and short CPU runs: smaller heads (512 -> 128), no
Gaussian blur (the paper's 23 px kernel is meaningless at this size), crops of 20-100% area,
AdamW instead of LARS (``method.optimizer=lars`` restores the paper's optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.normalized_mse import normalized_mse
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp
from ssl4rl.parts.momentum import cosine_momentum
from ssl4rl.parts.teacher import MomentumTeacher


@dataclass
class BYOLConfig(MethodConfig):
    """BYOL recipe for 32-84 px: AdamW lr 1e-3, heads 512 -> 128, momentum 0.996 -> 1 (cosine)."""

    name: str = recipe("name", "byol")
    proj_hidden: int = setting(512, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(128, ge=1, le=MAX_WIDTH)
    proj_layers: int = setting(2, ge=1, le=16)
    pred_hidden: int = setting(512, ge=1, le=MAX_WIDTH)
    teacher_momentum: float = setting(0.996, ge=0, le=1)  # the paper's base of the cosine schedule to 1
    aug1: ViewAug = field(default_factory=ViewAug)
    aug2: ViewAug = field(default_factory=lambda: ViewAug(solarize=0.2))


class BYOL(Method):
    """Online encoder + projector + predictor regressing an EMA target's projection of the other view."""

    name = "byol"
    Config = BYOLConfig
    pairs = True
    family = "non-contrastive"
    proj_last_norm: ClassVar[bool] = False  # a final affine-free BN on the projector (MoCo v3)

    def __init__(self, encoder: Encoder, cfg: BYOLConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(
            encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=cfg.proj_layers, last_norm=self.proj_last_norm
        )
        self.predictor = mlp(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim, layers=2)
        self.teacher = MomentumTeacher(encoder, self.projector)

    def online(self, x01: torch.Tensor) -> torch.Tensor:
        """Views in [0, 1] -> the online network's predictions."""
        return self.predictor(self.projector(self.embed(x01)))

    @torch.no_grad()
    def target(self, x01: torch.Tensor) -> torch.Tensor:
        """Views in [0, 1] -> the target network's projections (no gradient)."""
        return self.teacher.head(self.embed(x01, self.teacher.encoder))

    def criterion(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One direction of the symmetric loss: predictions of one view against targets of the other."""
        return normalized_mse(p, z)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.pair(batch)
        v1, v2 = apply_view(x, self.cfg.aug1, self.generator), apply_view(y, self.cfg.aug2, self.generator)
        loss = self.criterion(self.online(v1), self.target(v2)) + self.criterion(self.online(v2), self.target(v1))
        return loss, {"loss": loss.detach()}

    def momentum_at(self, step: int) -> float:
        """Target momentum after ``step`` finished steps (the schedule's value at training step ``step - 1``)."""
        return cosine_momentum(step - 1, self.ctx.total_steps, self.cfg.teacher_momentum)

    def after_step(self, step: int) -> None:
        self.teacher.update(self.encoder, self.projector, self.momentum_at(step))
