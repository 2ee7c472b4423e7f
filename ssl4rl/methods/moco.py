"""MoCo v2 (He et al., 2020; Chen et al., 2020): a query encoder with an MLP head is trained
with InfoNCE against a momentum key encoder's key of another view (the positive) and a queue
of keys from earlier batches (the negatives).

Faithful details: 2-layer MLP head (Linear, ReLU, Linear; no BN), L2-normalised keys,
temperature 0.2, constant key momentum 0.999 applied in ``after_step``; the batch's keys,
gathered from every process, are enqueued after the step (so they are negatives only from the
next step on); MoCo v2 augmentations (crops, flip, colour jitter 0.4/0.4/0.4/0.1 at p 0.8,
grayscale 0.2); the query encoder is exported. Deviations for 32-84 px frames and short CPU
runs: no Gaussian blur (meaningless at this size), crops of 20-100% area, a 1024-key queue
and a 512 -> 128 head, AdamW (``method.optimizer=sgd method.lr=0.03`` gives the paper's
optimiser), and no shuffled BN (the default ViT and the head have no batch norm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.queue_infonce import queue_info_nce
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp
from ssl4rl.parts.momentum import Queue
from ssl4rl.parts.teacher import MomentumTeacher


@dataclass
class MoCoConfig(MethodConfig):
    """MoCo v2 recipe for 32-84 px: temperature 0.2, momentum 0.999, 1024 negatives, AdamW lr 1e-3."""

    name: str = recipe("name", "moco")
    temperature: float = setting(0.2, gt=0)
    teacher_momentum: float = setting(0.999, ge=0, le=1)
    queue_size: int = setting(1024, ge=1, le=1_000_000)  # keep well below the number of training images
    proj_hidden: int = setting(512, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(128, ge=1, le=MAX_WIDTH)
    aug: ViewAug = field(default_factory=lambda: ViewAug(saturation=0.4))


class MoCo(Method):
    """Query encoder + MLP head, momentum key encoder + head, a queue of negative keys."""

    name = "moco"
    Config = MoCoConfig
    pairs = True

    def __init__(self, encoder: Encoder, cfg: MoCoConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=2, norm="none")
        self.teacher = MomentumTeacher(encoder, self.projector)
        self.queue = Queue(cfg.queue_size, cfg.proj_dim)
        self.pending_keys: torch.Tensor | None = None  # this step's keys, enqueued in after_step

    @torch.no_grad()
    def keys(self, x01: torch.Tensor) -> torch.Tensor:
        """Views in [0, 1] -> L2-normalised keys from the momentum encoder."""
        return F.normalize(self.teacher.head(self.embed(x01, self.teacher.encoder)), dim=1)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        v1, v2 = self.two_views(batch, self.cfg.aug)
        q, k = self.projector(self.embed(v1)), self.keys(v2)
        if self.training:
            self.pending_keys = k
        loss = queue_info_nce(q, k, self.queue.items, self.cfg.temperature)
        return loss, {"loss": loss.detach()}

    def after_step(self, step: int) -> None:
        self.teacher.update(self.encoder, self.projector, self.cfg.teacher_momentum)
        if self.pending_keys is not None:
            self.queue.push(self.pending_keys)
            self.pending_keys = None
