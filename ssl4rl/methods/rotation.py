"""RotNet (Gidaris et al., 2018): predict which of four rotations (0, 90, 180, 270 degrees) was
applied to an image.

Faithful details: the four rotations are exact (``torch.rot90``, no interpolation), label ``k``
means a rotation by ``k`` quarter turns counter-clockwise; by default every image appears in all
four rotations in the same batch (the paper's best setting; ``all_rotations=false`` draws one
rotation per image instead); light augmentation only (a random crop by shifting, horizontal flip).
Deviations: the paper's classifier is the upper conv blocks of the network; here it is a linear
layer (``head_layers=1``) or an MLP on the encoder's pooled features, and the optimiser is AdamW
for short CPU runs (the paper uses SGD with momentum).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.methods.base import MAX_WIDTH, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.heads import mlp
from ssl4rl.parts.tiles import classification_outputs


@dataclass
class RotationConfig(MethodConfig):
    """RotNet recipe for 32-84 px: batch 64 images (x4 rotations), shift by up to 4 px and flip,
    an MLP classifier (``head_layers=1``: linear)."""

    name: str = recipe("name", "rotation")
    batch_size: int = recipe("batch_size", 64)
    all_rotations: bool = True  # each image in all 4 rotations in one batch (the paper); false: one random rotation
    head_layers: int = setting(2, ge=1, le=16)  # 1: a linear classifier; 2+: an MLP
    head_hidden: int = setting(256, ge=1, le=MAX_WIDTH)
    aug: ViewAug = field(
        default_factory=lambda: ViewAug(crop_scale=(1.0, 1.0), shift_pad=4, flip=0.5, jitter=0.0, grayscale=0.0)
    )


def rotation_labels(n: int, all_rotations: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """CPU int64 labels for ``n`` images: ``[0]*n + [1]*n + [2]*n + [3]*n`` when every image is
    shown in all four rotations (the images repeated 4 times, in order), else one uniform draw each."""
    if all_rotations:
        return torch.arange(4).repeat_interleave(n)
    return torch.randint(0, 4, (n,), generator=generator)


def rotate(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Image ``i`` of (N,C,S,S) rotated by ``labels[i]`` quarter turns counter-clockwise
    (``torch.rot90`` over the last two dims); ``labels`` on the CPU."""
    if x.shape[-1] != x.shape[-2]:
        raise UserError(f"rotation needs square images, got {x.shape[-2]}x{x.shape[-1]}; resize or crop them square")
    out = torch.empty_like(x)
    for k in range(4):
        rows = (labels == k).nonzero().squeeze(1).to(x.device)
        if len(rows):
            out[rows] = torch.rot90(x[rows], k, dims=(-2, -1))
    return out


class Rotation(Method):
    """Encoder + a classifier over the four rotations."""

    name = "rotation"
    Config = RotationConfig
    family = "pretext"

    def __init__(self, encoder: Encoder, cfg: RotationConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.classifier = mlp(encoder.feature_dim, cfg.head_hidden, 4, layers=cfg.head_layers, norm="ln")

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> (augmented, rotated float images in [0, 1], labels on the device)."""
        x = apply_view(batch.images.float() / 255, self.cfg.aug, self.generator)
        labels = rotation_labels(x.shape[0], self.cfg.all_rotations, self.generator)
        if self.cfg.all_rotations:
            x = x.repeat(4, 1, 1, 1)
        return rotate(x, labels), labels.to(x.device)

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, labels = self.inputs(batch)
        return classification_outputs(self.classifier(self.embed(x)), labels)
