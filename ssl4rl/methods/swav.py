"""SwAV (Caron et al., 2020): swapping assignments between views. Codes of the global crops,
computed online with Sinkhorn-Knopp equipartition over learnable prototypes, are predicted
from every other crop.

Faithful details: 2 global crops (14-100% of the area) at the encoder's size and small local
crops (5-14%) at half that size, through a ViT at their own size (grouped by size; a
fixed-size encoder gets them resized); 2-layer projector (Linear, BN, ReLU, Linear) to an
L2-normalised embedding (the embedding the loss works on); prototypes are a bias-free linear
layer whose rows are L2-normalised after every step (the paper normalises them before each
forward: the same sequence); Sinkhorn-Knopp with epsilon 0.05 and 3 iterations, its sums taken
over all processes, only for the global crops; swapped prediction at temperature 0.1 over every
pair of different crops; the prototypes get no gradient during the first ``freeze_prototypes``
steps. Small batches (the paper's "working with small batches", batch_size < 256): a queue per
global crop of the last ``queue_batches`` batches of embeddings (the official 3840 = 15 x 256),
gathered from every process, starts being filled at epoch ``queue_start_epochs`` (the official
``epoch_queue_starts`` 15; an epoch is ``num_samples / batch_size`` steps) and enters Sinkhorn
once full; only the batch's codes enter the loss (each process uses its share of the queue, so
the Sinkhorn problem is the same as in one process). Deviations for 32-84 px frames and short CPU runs: fewer prototypes (256)
and smaller heads, 4 local crops, AdamW at 5e-4 per 256 images scaled linearly with the batch
(``method.optimizer=lars`` as in the paper; a flat 1e-3 contracted the embedding of small
batches within 10 steps), no Gaussian blur.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.swav import sinkhorn, swav_loss
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.dist import rank, world_size
from ssl4rl.parts.heads import mlp
from ssl4rl.parts.momentum import Queue
from ssl4rl.parts.multicrop import N_GLOBAL, MultiCrop, embed_views, multi_crop_pair

SMALL_BATCH = 256  # below this batch size the paper computes the codes over a queue as well


@dataclass
class SwAVConfig(MethodConfig):
    """SwAV recipe for 32-84 px: AdamW lr 5e-4 x batch / 256, batch 64, weight decay 1e-6, 256 prototypes."""

    name: str = recipe("name", "swav")
    batch_size: int = recipe("batch_size", 64)
    # for a batch of 256 images, scaled linearly with batch_size (the paper's 0.6 at 256, 4.8 at 4096)
    lr: float = recipe("lr", 5e-4)
    lr_reference_batch: int = recipe("lr_reference_batch", 256)
    weight_decay: float = recipe("weight_decay", 1e-6)
    proj_hidden: int = setting(512, ge=1, le=MAX_WIDTH)
    proj_dim: int = setting(128, ge=1, le=MAX_WIDTH)
    n_prototypes: int = setting(256, ge=2, le=MAX_WIDTH)
    temperature: float = setting(0.1, gt=0)
    epsilon: float = setting(0.05, gt=0)  # Sinkhorn's entropy regularisation
    sinkhorn_iters: int = setting(3, ge=1, le=1000)
    freeze_prototypes: int = setting(20, ge=0)  # steps without prototype updates
    # small batches (batch_size < 256): Sinkhorn also sees a queue of the last ``queue_batches``
    # batches of global-crop embeddings (official: 3840 = 15 x 256), filled from epoch
    # ``queue_start_epochs`` on (official ``epoch_queue_starts``) and used once full; 0: no queue
    queue_batches: int = setting(15, ge=0, le=1000)
    queue_start_epochs: int = setting(15, ge=0)
    crops: MultiCrop = field(default_factory=lambda: MultiCrop(global_scale=(0.14, 1.0), local_scale=(0.05, 0.14)))
    aug: ViewAug = field(default_factory=ViewAug)


class SwAV(Method):
    """Encoder + projector + prototypes trained by predicting the other crops' Sinkhorn codes."""

    name = "swav"
    Config = SwAVConfig
    pairs = True
    family = "clustering"

    def __init__(self, encoder: Encoder, cfg: SwAVConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.projector = mlp(encoder.feature_dim, cfg.proj_hidden, cfg.proj_dim, layers=2)
        self.prototypes = nn.Linear(cfg.proj_dim, cfg.n_prototypes, bias=False)
        self.normalize_prototypes()
        self.queue_length = cfg.queue_batches * cfg.batch_size if cfg.batch_size < SMALL_BATCH else 0
        steps_per_epoch = max(1, math.ceil(ctx.num_samples / cfg.batch_size))
        self.queue_start_step = cfg.queue_start_epochs * steps_per_epoch
        self.queues = nn.ModuleList(
            [Queue(self.queue_length, cfg.proj_dim) for _ in range(N_GLOBAL)] if self.queue_length else []
        )
        self.register_buffer("queue_seen", torch.zeros((), dtype=torch.long))
        self.pending: list[torch.Tensor] = []  # this step's global-crop embeddings, for after_step

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features -> the L2-normalised projector output the prototypes score."""
        return F.normalize(self.projector(features), dim=1)

    def embedding(self, x01: torch.Tensor) -> torch.Tensor:
        """The L2-normalised projector output of one view (what the prototypes score)."""
        return self.project(self.embed(x01))

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise each prototype."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def codes(self, scores: torch.Tensor, crop: int) -> torch.Tensor:
        """Sinkhorn codes of one global crop's scores (N, K), with this process's share of the
        crop's queue appended once the queue is full."""
        n = scores.shape[0]
        if self.queues and int(self.queue_seen) >= self.queue_length:
            share = self.queues[crop].items[rank() :: world_size()]
            scores = torch.cat([scores, share @ self.prototypes.weight.t()])
        return sinkhorn(scores, self.cfg.epsilon, self.cfg.sinkhorn_iters)[:n]

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.pair(batch)
        views = multi_crop_pair(x, y, self.encoder, self.cfg.crops, self.cfg.aug, self.generator)
        z = self.project(embed_views(self, views))
        w = self.prototypes.weight
        scores = (z @ (w.detach() if step < self.cfg.freeze_prototypes else w).t()).chunk(len(views))
        with torch.no_grad():
            codes = [self.codes(scores[i], i) for i in range(N_GLOBAL)]
        loss = swav_loss(scores, codes, self.cfg.temperature)
        if self.training and self.queues and step >= self.queue_start_step:
            self.pending = list(z.detach().chunk(len(views))[:N_GLOBAL])
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.normalize_prototypes()
        for queue, emb in zip(self.queues, self.pending, strict=False):
            queue.push(emb)
        if self.pending:
            self.queue_seen += self.pending[0].shape[0] * world_size()
            self.pending = []
