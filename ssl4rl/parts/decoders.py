"""A small conv decoder from an encoder's spatial map to an image-sized dense output.

Used by the dense pretext methods (colorization's per-pixel bin logits, inpainting's pixels).
It works on any ``forward_map``: ViT patch-token grids and conv activations alike. A 1x1
projection is followed by ``stages`` x (bilinear 2x upsampling, 3x3 conv, GroupNorm, ReLU),
a bilinear resize to the exact output size (whatever map size came in) and a 3x3 output conv.
GroupNorm keeps it independent of the batch (one process and DDP agree).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssl4rl.encoders import Encoder


def _block(in_dim: int, out_dim: int, kernel: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2)
    return [conv, nn.GroupNorm(math.gcd(8, out_dim), out_dim), nn.ReLU(inplace=True)]


class ConvDecoder(nn.Module):
    """Feature map (N, in_dim, h, w) -> dense output (N, out_dim, *size)."""

    def __init__(self, in_dim: int, out_dim: int, stages: int, hidden: int = 64) -> None:
        super().__init__()
        layers = _block(in_dim, hidden, 1)
        for _ in range(stages):
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), *_block(hidden, hidden, 3)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, out_dim, 3, padding=1)

    def forward(self, fmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decode ``fmap`` to an output of spatial ``size`` (H, W)."""
        x = self.body(fmap)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out(x)


@torch.no_grad()
def map_size(encoder: Encoder) -> int:
    """Side of ``encoder.forward_map`` on an ``image_size`` input (probed in eval mode: no BN updates)."""
    was_training = encoder.training
    encoder.eval()
    probe = torch.zeros(1, 3, encoder.image_size, encoder.image_size, device=encoder.mean.device)
    side = encoder.forward_map(probe).shape[-1]
    encoder.train(was_training)
    return int(side)


def decoder_for(encoder: Encoder, out_dim: int, out_size: int, hidden: int = 64) -> ConvDecoder:
    """A ``ConvDecoder`` from ``encoder``'s map with enough 2x stages to reach ``out_size`` (the
    last resize then fits the exact size)."""
    stages = max(0, math.ceil(math.log2(out_size / map_size(encoder))))
    return ConvDecoder(encoder.map_dim, out_dim, stages, hidden)
