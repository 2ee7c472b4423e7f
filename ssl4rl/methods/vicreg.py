"""VICReg (Bardes et al., 2022): variance-invariance-covariance regularisation of the
embeddings of two views.

Faithful details: 3-layer expander (Linear, BN, ReLU twice, then a bias-free Linear);
invariance = MSE between the views' embeddings, variance = hinge ``relu(1 - sqrt(var + 1e-4))``
on each dimension's standard deviation (gamma 1), covariance = squared off-diagonal covariances
divided by the dimension, coefficients 25 / 25 / 1; batch statistics over all processes (the
gathered batch); the online encoder is exported. Deviations for 32-84 px frames and short CPU
runs: expander 1024-1024-1024 (the paper: 8192), AdamW (``method.optimizer=lars`` as in the
paper), symmetric views without Gaussian blur or solarisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.vicreg import vicreg_loss
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp


@dataclass
class VICRegConfig(MethodConfig):
    """VICReg recipe for 32-84 px: AdamW lr 1e-3, batch 128, weight decay 1e-6, expander 1024x3, 25/25/1."""

    name: str = recipe("name", "vicreg")
    weight_decay: float = recipe("weight_decay", 1e-6)
    proj_hidden: int = setting(1024, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(1024, ge=1, le=MAX_WIDTH)
    sim_coeff: float = setting(25.0, ge=0)
    std_coeff: float = setting(25.0, ge=0)
    cov_coeff: float = setting(1.0, ge=0)
    aug: ViewAug = field(default_factory=ViewAug)


class VICReg(Method):
    """Encoder + 3-layer expander trained with the VICReg loss."""

    name = "vicreg"
    Config = VICRegConfig
    pairs = True
    family = "non-contrastive"

    def __init__(self, encoder: Encoder, cfg: VICRegConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=3, bias_last=False)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, v2 = self.two_views(batch, self.cfg.aug)
        c = self.cfg
        z1, z2 = self.projector(self.embed(v1)), self.projector(self.embed(v2))
        loss, terms = vicreg_loss(z1, z2, c.sim_coeff, c.std_coeff, c.cov_coeff)
        return loss, {"loss": loss.detach(), **terms}
