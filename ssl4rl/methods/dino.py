"""DINO (Caron et al., 2021): self-distillation with no labels. A student (encoder + DINO head)
matches the output distribution of an EMA teacher over multi-crop views.

Faithful details: 2 global crops (40-100% of the area) at the encoder's size and small local
crops (5-40%) at half that size, through a ViT at their own size (grouped by size; a fixed-size
encoder gets them resized); the teacher sees the global crops only, the student every crop;
cross-entropy over pairs of different views; DINO head (3-layer GELU MLP, L2-normalised
bottleneck, weight-normalised last layer with its norm fixed at 1); student temperature 0.1,
teacher temperature warmed up linearly from 0.04 to 0.07 over the first 30% of the run; the
teacher output is centred by an EMA centre (momentum 0.9, updated after each step from that
step's teacher outputs averaged over processes); teacher momentum 0.996 -> 1 on a cosine
schedule; the last layer is frozen for the first ``freeze_last_layer`` steps (its gradient is
dropped, as the paper does for the first epoch); the teacher encoder is exported.
The learning rate follows the official code's linear scaling rule: ``lr`` (its 5e-4) is
given for 256 images and scaled by ``batch_size / 256``.
Choices for 32-84 px frames and tiny backbones: batch norm in the head (the official code's
``use_bn_in_head`` option, off there for ViTs): small frames through a small untrained backbone
give nearly the same features for every image (mean cosine about 0.97 on the contract test's
toy images), and without it the student's bottleneck collapses within the first steps while
the teacher is still near its random start; the head's batch norm re-spreads those features.
Deviations for short CPU runs: a small head (1024 prototypes), 4 local crops, one
augmentation for every crop (no Gaussian blur at this size, no solarisation), a constant
weight decay of 0.04 (the paper raises it to 0.4) and no gradient clipping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
import torch.nn.functional as F

from ssl4rl.augment import ViewAug
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.losses.dino import dino_loss
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.dist import all_reduce_mean
from ssl4rl.parts.heads import DINOHead
from ssl4rl.parts.momentum import cosine_momentum
from ssl4rl.parts.multicrop import N_GLOBAL, MultiCrop, embed_views, multi_crop_pair
from ssl4rl.parts.teacher import MomentumTeacher

@dataclass
class DINOConfig(MethodConfig):
    """DINO recipe for 32-84 px: AdamW lr 5e-4 x batch / 256, batch 64, weight decay 0.04, 2 global + 4 local crops."""

    name: str = recipe("name", "dino")
    batch_size: int = recipe("batch_size", 64)
    lr: float = recipe("lr", 5e-4)  # for a batch of 256 images, scaled linearly with batch_size (the official rule)
    lr_reference_batch: int = recipe("lr_reference_batch", 256)
    weight_decay: float = recipe("weight_decay", 0.04)
    out_dim: int = setting(1024, ge=1, le=MAX_WIDTH)
    hidden_dim: int = setting(512, ge=1, le=MAX_WIDTH)
    bottleneck_dim: int = setting(128, ge=1, le=MAX_WIDTH)
    use_bn_in_head: bool = True  # batch norm in the head's hidden layers (see the module docstring)
    student_temp: float = setting(0.1, gt=0)
    teacher_temp_start: float = setting(0.04, gt=0)  # at most teacher_temp
    teacher_temp: float = setting(0.07, gt=0)  # at most student_temp (the teacher sharpens)
    teacher_temp_warmup: float = setting(0.3, ge=0, le=1)  # fraction of the run's steps
    teacher_momentum: float = setting(0.996, ge=0, le=1)  # base of the cosine schedule to 1
    center_momentum: float = setting(0.9, ge=0, le=1)
    freeze_last_layer: int = setting(20, ge=0)  # steps without updates of the head's last layer
    crops: MultiCrop = field(default_factory=MultiCrop)
    aug: ViewAug = field(default_factory=ViewAug)

    def check(self) -> None:
        """The teacher temperature warms up to ``teacher_temp``, which sharpens: at most ``student_temp``."""
        if self.teacher_temp_start > self.teacher_temp:
            raise UserError(f"method.teacher_temp_start={self.teacher_temp_start} is above method.teacher_temp="
                            f"{self.teacher_temp}; the warm-up raises the teacher temperature, so start at or below it")
        if self.teacher_temp > self.student_temp:
            raise UserError(f"method.teacher_temp={self.teacher_temp} is above method.student_temp={self.student_temp}; "
                            "the teacher must be sharper than the student: use teacher_temp <= student_temp")


def teacher_temperature(step: int, total_steps: int, start: float, end: float, warmup: float) -> float:
    """Linear warm-up from ``start`` to ``end`` over the first ``warmup`` fraction of the steps, then ``end``."""
    warm = warmup * total_steps
    return end if step >= warm else start + (end - start) * step / warm


class DINO(Method):
    """Student encoder + DINO head distilled from an EMA teacher with a centred, sharpened output."""

    name = "dino"
    Config = DINOConfig
    pairs = True
    family = "non-contrastive"

    def __init__(self, encoder: Encoder, cfg: DINOConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.head = DINOHead(encoder.feature_dim, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.use_bn_in_head)
        self.teacher = MomentumTeacher(encoder, self.head)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.teacher_mean: torch.Tensor | None = None  # this step's mean teacher output, for after_step

    def student_logits(self, features: torch.Tensor, step: int) -> torch.Tensor:
        """The student head; its last layer gets no gradient during the first ``freeze_last_layer`` steps."""
        last = self.head.last.weight
        h = F.normalize(self.head.mlp(features), dim=-1)
        return F.linear(h, last.detach() if step < self.cfg.freeze_last_layer else last)

    def teacher_temp_at(self, step: int) -> float:
        """The teacher temperature at training step ``step``."""
        c = self.cfg
        return teacher_temperature(step, self.ctx.total_steps, c.teacher_temp_start, c.teacher_temp, c.teacher_temp_warmup)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.pair(batch)
        views = multi_crop_pair(x, y, self.encoder, self.cfg.crops, self.cfg.aug, self.generator)
        with torch.no_grad():
            teacher = self.teacher.head(embed_views(self, views[:N_GLOBAL], self.teacher.encoder))
        student = self.student_logits(embed_views(self, views), step)
        temp = self.teacher_temp_at(step)
        loss = dino_loss(student.chunk(len(views)), teacher.chunk(N_GLOBAL), self.center, self.cfg.student_temp, temp)
        if self.training:
            self.teacher_mean = teacher.mean(0, keepdim=True)
        return loss, {"loss": loss.detach(), "teacher_temp": torch.tensor(temp)}

    def momentum_at(self, step: int) -> float:
        """Teacher momentum after ``step`` finished steps (the schedule at training step ``step - 1``)."""
        return cosine_momentum(step - 1, self.ctx.total_steps, self.cfg.teacher_momentum)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self.teacher.update(self.encoder, self.head, self.momentum_at(step))
        if self.teacher_mean is not None:
            m = self.cfg.center_momentum
            self.center.mul_(m).add_(all_reduce_mean(self.teacher_mean), alpha=1 - m)
            self.teacher_mean = None

    def embedding(self, x01: torch.Tensor) -> torch.Tensor:
        """The student head's L2-normalised bottleneck, before the prototypes."""
        return nn.functional.normalize(self.head.mlp(self.embed(x01)), dim=-1)

    def export_encoder(self) -> Encoder:
        """The teacher's encoder (the paper evaluates the teacher)."""
        return self.teacher.encoder  # type: ignore[return-value]
