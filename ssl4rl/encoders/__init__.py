"""Encoders and the contract every part of ssl4rl uses (see ``ssl4rl.encoders.base``)."""

from ssl4rl.encoders import conv as _conv  # noqa: F401  (registers 'conv')
from ssl4rl.encoders import resnet as _resnet  # noqa: F401  (registers 'resnet')
from ssl4rl.encoders import timm_any as _timm_any  # noqa: F401  (registers 'timm')
from ssl4rl.encoders import vit as _vit  # noqa: F401  (registers 'vit')
from ssl4rl.encoders.base import (
    ARCHS,
    Encoder,
    build_encoder,
    check_backbone,
    check_backbone_config,
    encoder_meta,
    load_encoder,
    random_like,
    register_arch,
    save_encoder,
)
from ssl4rl.encoders.conv import ConvEncoder
from ssl4rl.encoders.resnet import ResNetEncoder
from ssl4rl.encoders.timm_any import TimmEncoder
from ssl4rl.encoders.vit import ViTEncoder

__all__ = [
    "ARCHS",
    "ConvEncoder",
    "Encoder",
    "ResNetEncoder",
    "TimmEncoder",
    "ViTEncoder",
    "build_encoder",
    "check_backbone",
    "check_backbone_config",
    "encoder_meta",
    "load_encoder",
    "random_like",
    "register_arch",
    "save_encoder",
]
