"""A small conv encoder in the CURL / DrQ style for 64-84 px frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssl4rl.encoders.base import Encoder, EncoderConfig, register_arch
from ssl4rl.errors import UserError
from ssl4rl.fields import setting, validate


MAX_HEAD = 2**28  # weights of the linear head (flattened map x feature_dim)


def _map_side(image_size: int, layers: int, stride2: int = 1) -> int:
    """Side of the last conv layer's map: ``stride2`` 3x3 stride-2 convs, then 3x3 stride-1 convs, no padding."""
    side = image_size
    for i in range(layers):
        side = (side - 3) // 2 + 1 if i < stride2 else side - 2
    return side


@dataclass
class ConvConfig(EncoderConfig):
    """``ConvEncoder``'s kwargs."""

    image_size: int = setting(84, ge=8, le=1024)
    channels: int = setting(32, ge=1, le=1024)
    feature_dim: int = setting(50, ge=1, le=8192)
    layers: int = setting(4, ge=1, le=16)
    stride2: int = setting(1, ge=0, le=16)  # how many of the first layers have stride 2 (CURL: 1; CPU-sized: all)

    def check(self) -> None:
        """The convolutions leave a map of at least 1 px, and the linear head at most ``MAX_HEAD`` weights."""
        if self.stride2 > self.layers:
            raise UserError(f"stride2={self.stride2}: at most layers={self.layers} layers can have stride 2")
        side = _map_side(self.image_size, self.layers, self.stride2)
        if side < 1:
            raise UserError(f"layers={self.layers} conv layers shrink image_size={self.image_size} to nothing; "
                            "use fewer layers or larger images")
        weights = side * side * self.channels * self.feature_dim
        if weights > MAX_HEAD:
            raise UserError(f"image_size={self.image_size} with channels={self.channels} and feature_dim={self.feature_dim} "
                            f"gives a linear head of {weights:,} weights, more than {MAX_HEAD:,}; use smaller images or widths")


@register_arch
class ConvEncoder(Encoder):
    """``layers`` 3x3 convs (the first ``stride2`` of stride 2) -> linear -> LayerNorm -> tanh, as in CURL (4 layers,
    the first of stride 2). Three layers all of stride 2 with 16 channels is the CPU-sized pixel-RL encoder.

    ``forward_map`` is the last conv layer's activations (N, channels, h, w). The
    linear head needs a fixed flatten size, so inputs must be ``image_size``.
    """

    arch = "conv"
    Config = ConvConfig

    def __init__(
        self, image_size: int = 84, channels: int = 32, feature_dim: int = 50, layers: int = 4, stride2: int = 1,
        **norm: Any,
    ) -> None:
        validate(ConvConfig(image_size, **norm, channels=channels, feature_dim=feature_dim, layers=layers, stride2=stride2))
        super().__init__(image_size, **norm)
        self.channels, self.layers, self.feature_dim, self.stride2 = channels, layers, feature_dim, stride2
        self.map_dim = channels
        convs: list[nn.Module] = []
        for i in range(layers):
            convs += [nn.Conv2d(3 if i == 0 else channels, channels, 3, stride=2 if i < stride2 else 1), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, 3, image_size, image_size)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())

    def config(self) -> dict[str, Any]:
        return {**super().config(), "channels": self.channels, "feature_dim": self.feature_dim, "layers": self.layers,
                "stride2": self.stride2}

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_map(x).flatten(1))
