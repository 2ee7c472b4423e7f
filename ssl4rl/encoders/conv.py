"""A small conv encoder in the CURL / DrQ style for 64-84 px frames."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl4rl.encoders.base import Encoder, register_arch


@register_arch
class ConvEncoder(Encoder):
    """4 conv layers (3x3, first stride 2) -> linear -> LayerNorm -> tanh, as in CURL.

    ``forward_map`` is the last conv layer's activations (N, channels, h, w). The
    linear head needs a fixed flatten size, so inputs must be ``image_size``.
    """

    arch = "conv"

    def __init__(
        self, image_size: int = 84, channels: int = 32, feature_dim: int = 50, layers: int = 4, **norm: Any
    ) -> None:
        super().__init__(image_size, **norm)
        self.channels, self.layers, self.feature_dim = channels, layers, feature_dim
        self.map_dim = channels
        convs: list[nn.Module] = [nn.Conv2d(3, channels, 3, stride=2), nn.ReLU()]
        for _ in range(layers - 1):
            convs += [nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*convs)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, 3, image_size, image_size)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())

    def config(self) -> dict[str, Any]:
        return {**super().config(), "channels": self.channels, "feature_dim": self.feature_dim, "layers": self.layers}

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_map(x).flatten(1))
