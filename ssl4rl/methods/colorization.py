"""Colorization (Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016).

Faithful parts: the encoder sees only the lightness L of a CIE Lab image and predicts, per
output pixel, a distribution over quantised ab bins (grid 10, in-gamut bins only: Q = 261 here,
see ``ssl4rl.parts.lab``); targets are soft-encoded over the 5 nearest bins with a Gaussian of
sigma 5; the loss is the multinomial cross-entropy, optionally class-rebalanced (eq. 3-4 of the
paper: lambda 0.5, prior smoothed by sigma 5; ``rebalance=true``, off by default, the prior is
counted once over the training set in ``on_train_start``); predictions are decoded with the
annealed mean (T 0.38) for the figures.

Deliberate choices for the shared encoder contract and small images: the input is L/100
replicated to 3 channels (a grey image), then the encoder's usual normalisation; logits come
from the encoder's ``forward_map`` through a small conv decoder at 1/``out_stride`` of the
image (1/4 as in the paper: 56 of 224), against ab averaged over each output cell; random
crops and flips only (no colour augmentation: colour is the target); AdamW at lr 1e-3 with the
paper's weight decay 1e-3 for short CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.fields import setting
from ssl4rl.losses.soft_ce import soft_cross_entropy
from ssl4rl.methods.base import MAX_CHANNELS, Batch, Method, MethodConfig, MethodContext, recipe
from ssl4rl.parts.decoders import decoder_for
from ssl4rl.parts.lab import (
    ab_points,
    annealed_mean,
    gamut_bins,
    lab_to_rgb,
    quantize_ab,
    rebalance_weights,
    rgb_to_lab,
    soft_encode,
)


@dataclass
class ColorizationConfig(MethodConfig):
    """Colorization recipe for 32-84 px frames."""

    name: str = recipe("name", "colorization")
    batch_size: int = recipe("batch_size", 64)
    lr: float = recipe("lr", 1e-3)
    weight_decay: float = recipe("weight_decay", 1e-3)
    grid: float = setting(10.0, ge=1, le=100)  # ab bin width
    neighbours: int = setting(5, ge=1)  # bins a soft target spreads over (at most the number of bins)
    sigma: float = setting(5.0, gt=0)  # Gaussian of the soft encoding (ab units)
    out_stride: int = setting(4, ge=1, le=1024)  # logits at 1/out_stride of the image side
    rebalance: bool = False  # class rebalancing (paper eq. 3-4)
    rebalance_lambda: float = setting(0.5, ge=0, le=1)
    temperature: float = setting(0.38, gt=0, le=1)  # annealed-mean decoding (figures)
    decoder_dim: int = setting(64, ge=1, le=MAX_CHANNELS)
    aug: ViewAug = field(default_factory=lambda: ViewAug(crop_scale=(0.5, 1.0), jitter=0.0, grayscale=0.0))


class Colorization(Method):
    """Encoder (grey L in) + conv decoder to per-pixel ab-bin logits."""

    name = "colorization"
    Config = ColorizationConfig
    family = "pretext"

    def __init__(self, encoder: Encoder, cfg: ColorizationConfig, ctx: MethodContext) -> None:
        super().__init__(encoder, cfg, ctx)
        if not 1 <= cfg.out_stride <= encoder.image_size:
            raise UserError(f"method.out_stride={cfg.out_stride}: must be in [1, image_size={encoder.image_size}]")
        bins = gamut_bins(cfg.grid)
        if not 1 <= cfg.neighbours <= len(bins):
            raise UserError(f"method.neighbours={cfg.neighbours}: must be in [1, {len(bins)}] (the number of ab bins)")
        self.register_buffer("bins", bins, persistent=False)  # derived from cfg.grid
        self.register_buffer("class_weights", torch.ones(len(bins)))
        self.decoder = decoder_for(encoder, len(bins), encoder.image_size // cfg.out_stride, cfg.decoder_dim)

    def output_size(self, x: torch.Tensor) -> tuple[int, int]:
        """Logit map size for images ``x``."""
        s = self.cfg.out_stride
        return max(1, x.shape[-2] // s), max(1, x.shape[-1] // s)

    @staticmethod
    def grey(lab: torch.Tensor) -> torch.Tensor:
        """The encoder's input: L / 100 replicated to 3 channels, in [0, 1]."""
        return (lab[:, :1] / 100).clamp(0, 1).expand(-1, 3, -1, -1)

    def logits(self, lab: torch.Tensor) -> torch.Tensor:
        """Lab images (N,3,H,W) -> ab-bin logits (N,Q,h,w) from their L channel alone."""
        return self.decoder(self.feature_map(self.grey(lab)), self.output_size(lab))

    def target_ab(self, lab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """ab averaged over each output cell, as points (N*h*w, 2)."""
        return ab_points(F.adaptive_avg_pool2d(lab[:, 1:], size))

    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x01 = self.fit_size(apply_view(batch.images.float() / 255, self.cfg.aug, self.generator))
        lab = rgb_to_lab(x01)
        logits = self.logits(lab)
        index, weights = soft_encode(self.target_ab(lab, logits.shape[-2:]), self.bins, self.cfg.neighbours, self.cfg.sigma)
        flat = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
        nearest = index[:, 0]
        loss = soft_cross_entropy(flat, index, weights, self.class_weights[nearest] if self.cfg.rebalance else None)
        acc = (flat.argmax(1) == nearest).float().mean()
        return loss, {"loss": loss.detach(), "acc": acc}

    @torch.no_grad()
    def on_train_start(self) -> None:
        """With ``rebalance``: count nearest bins over the training set once, set the class weights."""
        if not self.cfg.rebalance:
            return
        if self.ctx.all_batches is None:
            raise UserError("colorization rebalance=true needs the training set to count colours; run it through ssl4rl.pretrain")
        counts = torch.zeros(len(self.bins), device=self.bins.device)
        size = (self.encoder.image_size // self.cfg.out_stride,) * 2
        for b in self.ctx.all_batches():
            lab = rgb_to_lab(self.fit_size(b.images.float().to(self.bins.device) / 255))
            counts += torch.bincount(quantize_ab(self.target_ab(lab, size), self.bins), minlength=len(self.bins))
        self.class_weights.copy_(rebalance_weights(counts, self.bins, self.cfg.sigma, self.cfg.rebalance_lambda))

    def save_figures(self, batch: Batch, folder: Path, step: int) -> list[Path]:
        from ssl4rl.viz import save_image_rows

        x01 = self.fit_size(batch.images[:8].float() / 255)
        lab = rgb_to_lab(x01)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            ab = annealed_mean(self.logits(lab), self.bins, self.cfg.temperature)
        self.train(was_training)
        ab = F.interpolate(ab, size=x01.shape[-2:], mode="bilinear", align_corners=False)
        rows = {"original": x01, "input (L)": self.grey(lab), "prediction": lab_to_rgb(torch.cat([lab[:, :1], ab], 1))}
        path = folder / f"colorization_step{step:07d}.png"
        save_image_rows(path, rows, title=f"colorization, step {step}")
        return [path]
