"""NPID, non-parametric instance discrimination (Wu et al., 2018): every training image is its
own class, represented by a slot of a memory bank.

Faithful details: a linear projection of the encoder's features to 128-d, L2-normalised; a
memory bank with one unit vector per training sample (``MethodContext.num_samples`` slots,
indexed by ``Batch.index``), initialised at random; the bank row of each sample is updated
after the optimiser step with momentum 0.5, ``v_i <- normalise(0.5 v_i + 0.5 f_i)``;
temperature 0.07; one augmented view per image (random resized crop, flip, colour jitter,
grayscale, as the paper's code).

Loss: the paper's non-parametric softmax, computed exactly over the whole bank rather than
approximated by NCE with 4096 noise samples (the paper's Table 1 shows the full softmax is the
better of the two; with the small image sets of short CPU runs the full bank costs one
(B x N) matrix product). The maths is InfoNCE with the bank as keys and the sample's own slot as
the positive, so it is ``info_nce``. Deliberate deviations: no proximal regularisation (the
paper's later add-on) and AdamW instead of SGD for short CPU runs (``method.optimizer=sgd``,
``method.lr=0.03`` for the paper's recipe).
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
from ssl4rl.parts.momentum import MemoryBank


@dataclass
class NPIDConfig(MethodConfig):
    """NPID recipe for 32-84 px: 128-d features, temperature 0.07, bank momentum 0.5, weight decay 5e-4."""

    name: str = recipe("name", "npid")
    batch_size: int = recipe("batch_size", 128)
    weight_decay: float = recipe("weight_decay", 5e-4)
    temperature: float = setting(0.07, gt=0)
    feature_dim: int = setting(128, ge=1, le=MAX_CHANNELS)  # one vector of this size per training sample
    bank_momentum: float = setting(0.5, ge=0, le=1)
    aug: ViewAug = field(default_factory=ViewAug)


class NPID(Method):
    """Encoder + linear 128-d projection, full softmax over a momentum memory bank."""

    name = "npid"
    Config = NPIDConfig
    family = "contrastive"
    indexes_train_set = True

    def __init__(self, encoder: Encoder, cfg: NPIDConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        if ctx.num_samples < 1:
            raise UserError("method=npid needs MethodContext.num_samples (the training set size) for its memory bank")
        self.projector = nn.Linear(encoder.feature_dim, cfg.feature_dim)
        self.memory = MemoryBank(ctx.num_samples, cfg.feature_dim, cfg.bank_momentum)
        init = torch.randn(ctx.num_samples, cfg.feature_dim, generator=self.generator)
        self.memory.bank.copy_(F.normalize(init, dim=1))  # seeded from the method's generator
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (index, features) for after_step

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> L2-normalised 128-d features (N, feature_dim)."""
        return F.normalize(self.projector(self.embed(x01)), dim=1)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f = self.features(apply_view(batch.images.float() / 255, self.cfg.aug, self.generator))
        loss = info_nce(f, self.memory.bank, batch.index, self.cfg.temperature)
        if self.training:
            self._pending = (batch.index, f.detach())
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Write the last training batch's features into its bank rows (momentum update)."""
        if self._pending is not None:
            self.memory.update(*self._pending)
            self._pending = None
