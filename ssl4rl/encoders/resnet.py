"""timm ResNet-18/34/50 encoders, with the small-image (CIFAR) stem by default.

The ImageNet stem (7x7 stride-2 conv + max-pool) shrinks a 32-64 px frame 4x
before the first stage and silently costs accuracy; ``small_stem`` replaces it
by a 3x3 stride-1 conv and no pooling, so the last stage is image_size / 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
from torch import nn

from ssl4rl.encoders.base import EncoderConfig, register_arch
from ssl4rl.encoders.timm_any import TimmBackbone
from ssl4rl.fields import setting, validate

DEPTHS = (18, 34, 50)


def _depth(value: Any) -> str | None:
    return None if value in DEPTHS else f"must be one of: {', '.join(map(str, DEPTHS))}"


@dataclass
class ResNetConfig(EncoderConfig):
    """``ResNetEncoder``'s kwargs."""

    image_size: int = setting(64, ge=8, le=1024)
    depth: int = setting(18, check=_depth)
    small_stem: bool = True


def use_small_stem(model: nn.Module) -> None:
    """Swap a timm ResNet's stem for a 3x3 stride-1 conv without max-pool (in place)."""
    old: nn.Conv2d = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # timm's conv init
    model.maxpool = nn.Identity()


@register_arch
class ResNetEncoder(TimmBackbone):
    """timm ResNet (random init): features = global average pool, map = last stage output."""

    arch = "resnet"
    Config = ResNetConfig
    dynamic_size = True

    def __init__(self, image_size: int = 64, depth: int = 18, small_stem: bool = True, **norm: Any) -> None:
        validate(ResNetConfig(image_size, **norm, depth=depth, small_stem=small_stem))
        model = timm.create_model(f"resnet{depth}", pretrained=False, num_classes=0)
        if small_stem:
            use_small_stem(model)
        super().__init__(image_size, model, f"resnet{depth}", **norm)
        self.depth, self.small_stem = depth, bool(small_stem)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "depth": self.depth, "small_stem": self.small_stem}
