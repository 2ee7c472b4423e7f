"""Context encoder (Pathak et al., "Context Encoders: Feature Learning by Inpainting", CVPR 2016).

Faithful parts: a region of the image is hidden and filled with the dataset mean (zero after
the encoder's normalisation); the encoder sees the masked image and a decoder from its spatial
map reconstructs the pixels; the reconstruction loss is L2 on the hidden region only. Masks:
``center`` (a central square of ``mask_area`` = 1/4 of the image, the default), ``block``
(``blocks`` possibly overlapping random squares, together ``mask_area``) and ``region``
(random shapes). Optional, as in the paper's code: an ``overlap``-pixel band around the hole,
visible to the encoder, is also reconstructed with ``overlap_weight`` = 10 times the weight of
the hole (paper: 4 px; off by default here). Optional adversarial term (``adversarial=true``,
off by default): loss = (1 - lambda) * L2 + lambda * adv with lambda = 0.001, against a small
conv discriminator that sees the real image and the image with the prediction pasted in.

One optimiser trains everything in one step, without gradient reversal: the discriminator's
loss (BCE, real -> 1, fake -> 0) is computed on *detached* fakes, so it reaches only the
discriminator; the generator's adversarial loss (fake -> 1) goes through a functional call of
the discriminator with *detached* parameters, so it reaches only the encoder and decoder.
The step minimises (1 - lambda) * L2 + lambda * adv + D-loss; each part gets only its own term.

Deliberate deviations: ``region`` masks threshold smooth random noise (upsampled 4x4) at the
quantile that hides exactly ``mask_area`` (the paper used PASCAL segmentation shapes); the
decoder predicts the whole image (the loss still counts only the hole and band); L2 is on
normalised pixels; AdamW at lr 1e-3 for short CPU runs (paper: Adam 2e-4, beta1 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting
from ssl4rl.losses.weighted_l2 import weighted_l2
from ssl4rl.methods.base import MAX_CHANNELS, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.decoders import decoder_for

MASKS = ("center", "block", "region")
REGION_NOISE = 4  # side of the noise grid that region masks are upsampled from


@dataclass
class InpaintingConfig(MethodConfig):
    """Context-encoder recipe for 32-84 px frames."""

    name: str = recipe("name", "inpainting")
    batch_size: int = recipe("batch_size", 64)
    lr: float = recipe("lr", 1e-3)
    mask: str = setting("center", choices=MASKS)  # center | block | region
    mask_area: float = setting(0.25, gt=0, lt=1)  # fraction of the image hidden
    blocks: int = setting(4, ge=1, le=64)  # squares of a block mask
    overlap: int = setting(0, ge=0, le=64)  # px band around the hole also reconstructed (paper: 4)
    overlap_weight: float = setting(10.0, ge=0)  # weight of the band relative to the hole
    adversarial: bool = False
    adv_weight: float = setting(0.001, ge=0, le=1)  # lambda_adv; the L2 term gets 1 - lambda_adv
    decoder_dim: int = setting(64, ge=1, le=MAX_CHANNELS)
    disc_dim: int = setting(32, ge=1, le=MAX_CHANNELS)
    aug: ViewAug = field(default_factory=lambda: ViewAug(crop_scale=(0.5, 1.0), jitter=0.0, grayscale=0.0))


def _squares(shape: tuple[int, int], side: tuple[int, int], top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Union of squares per image: corners ``top``/``left`` (n, k) -> mask (n, 1, H, W), 1 = hidden."""
    rows, cols = torch.arange(shape[0]), torch.arange(shape[1])
    in_r = (rows >= top[..., None]) & (rows < top[..., None] + side[0])  # (n, k, H)
    in_c = (cols >= left[..., None]) & (cols < left[..., None] + side[1])  # (n, k, W)
    return (in_r[..., :, None] & in_c[..., None, :]).any(1).unsqueeze(1).float()


def _side(shape: tuple[int, int], area: float) -> tuple[int, int]:
    return max(1, round(shape[0] * math.sqrt(area))), max(1, round(shape[1] * math.sqrt(area)))


def center_mask(n: int, shape: tuple[int, int], area: float = 0.25) -> torch.Tensor:
    """The central rectangle covering ``area`` of each (H, W) image: (n, 1, H, W), 1 = hidden."""
    side = _side(shape, area)
    top = torch.full((n, 1), (shape[0] - side[0]) // 2)
    left = torch.full((n, 1), (shape[1] - side[1]) // 2)
    return _squares(shape, side, top, left)


def block_mask(n: int, shape: tuple[int, int], area: float, blocks: int, generator: torch.Generator | None) -> torch.Tensor:
    """``blocks`` random rectangles of ``area / blocks`` each (they may overlap): (n, 1, H, W)."""
    side = _side(shape, area / blocks)
    top = torch.randint(0, shape[0] - side[0] + 1, (n, blocks), generator=generator)
    left = torch.randint(0, shape[1] - side[1] + 1, (n, blocks), generator=generator)
    return _squares(shape, side, top, left)


def region_mask(n: int, shape: tuple[int, int], area: float, generator: torch.Generator | None) -> torch.Tensor:
    """Random smooth shapes hiding exactly ``round(area * H * W)`` pixels: (n, 1, H, W)."""
    noise = torch.rand(n, 1, REGION_NOISE, REGION_NOISE, generator=generator)
    noise = F.interpolate(noise, size=shape, mode="bicubic", align_corners=False).flatten(1)
    k = max(1, round(area * shape[0] * shape[1]))
    return torch.zeros_like(noise).scatter_(1, noise.topk(k, dim=1).indices, 1.0).reshape(n, 1, *shape)


def loss_weights(mask: torch.Tensor, overlap: int, overlap_weight: float) -> torch.Tensor:
    """Per-pixel L2 weights: 1 on the hole, ``overlap_weight`` on the ``overlap``-px band around it, 0 elsewhere."""
    if overlap <= 0:
        return mask
    band = F.max_pool2d(mask, 2 * overlap + 1, stride=1, padding=overlap) - mask
    return mask + overlap_weight * band


def discriminator(width: int = 32) -> nn.Sequential:
    """A small conv discriminator: images (N,3,H,W) -> real/fake logits (N,)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 1), nn.Flatten(0),
    )


class Inpainting(Method):
    """Encoder on the masked image + conv decoder to pixels (+ optional discriminator)."""

    name = "inpainting"
    Config = InpaintingConfig
    family = "generative"

    def __init__(self, encoder: Encoder, cfg: InpaintingConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        self.decoder = decoder_for(encoder, 3, encoder.image_size, cfg.decoder_dim)
        self.discriminator = discriminator(cfg.disc_dim) if cfg.adversarial else None

    def make_mask(self, n: int, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The configured mask for ``n`` images of ``shape`` (drawn from ``self.generator``), on ``device``."""
        cfg = self.cfg
        if cfg.mask == "center":
            mask = center_mask(n, shape, cfg.mask_area)
        elif cfg.mask == "block":
            mask = block_mask(n, shape, cfg.mask_area, cfg.blocks, self.generator)
        else:
            mask = region_mask(n, shape, cfg.mask_area, self.generator)
        return mask.to(device)

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> (normalised target, mask (N,1,H,W) 1 = hidden, prediction), same size."""
        target = self.encoder.normalize(x01)
        mask = self.make_mask(target.shape[0], tuple(target.shape[-2:]), target.device)
        pred = self.decoder(self.encoder.forward_map(target * (1 - mask)), target.shape[-2:])
        return target, mask, pred

    def losses(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        """All terms with their graphs: ``loss`` (what the step minimises), ``l2`` (hole MSE) and,
        when adversarial, ``rec``, ``adv`` (generator) and ``disc`` (discriminator)."""
        cfg = self.cfg
        target, mask, pred = self(x01)
        l2 = weighted_l2(pred, target, mask)
        rec = weighted_l2(pred, target, loss_weights(mask, cfg.overlap, cfg.overlap_weight)) if cfg.overlap else l2
        if self.discriminator is None:
            return {"loss": rec, "l2": l2}
        fake = target * (1 - mask) + pred * mask
        frozen = {k: p.detach() for k, p in self.discriminator.named_parameters()}
        adv_logits = functional_call(self.discriminator, frozen, (fake,))
        adv = F.binary_cross_entropy_with_logits(adv_logits, torch.ones_like(adv_logits))
        real_logits, fake_logits = self.discriminator(target), self.discriminator(fake.detach())
        disc = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
            F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        loss = (1 - cfg.adv_weight) * rec + cfg.adv_weight * adv + disc
        return {"loss": loss, "l2": l2, "rec": rec, "adv": adv, "disc": disc}

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x01 = self.fit_size(apply_view(batch.images.float() / 255, self.cfg.aug, self.generator))
        terms = self.losses(x01)
        return terms["loss"], {k: v.detach() for k, v in terms.items()}

    def save_figures(self, batch: Batch, folder: Path, step: int) -> list[Path]:
        from ssl4rl.viz import save_image_rows

        was_training = self.training
        self.eval()
        with torch.no_grad():
            target, mask, pred = self(self.fit_size(batch.images[:8].float() / 255))
        self.train(was_training)
        enc = self.encoder
        denorm = lambda x: (x * enc.std + enc.mean).clamp(0, 1)
        rows = {
            "original": denorm(target),
            "input": denorm(target * (1 - mask)),
            "prediction": denorm(target * (1 - mask) + pred * mask),
        }
        path = folder / f"inpainting_step{step:07d}.png"
        save_image_rows(path, rows, title=f"context encoder ({self.cfg.mask} mask), step {step}")
        return [path]
