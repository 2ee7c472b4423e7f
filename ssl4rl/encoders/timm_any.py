"""Any timm model as an encoder (arch ``timm``), never with pretrained weights.

Features are the model's pooled pre-logits (``forward_head(pre_logits=True)``
after ``forward_features``); the map is the ``forward_features`` output as
(N, C, h, w): conv maps as they are (NHWC models permuted), ViT tokens without
the prefix tokens reshaped to a square grid. ViTs are built with
``dynamic_img_size=True`` when the model accepts it.
"""

from __future__ import annotations

import math
from typing import Any

import timm
import torch
from torch import nn

from ssl4rl.encoders.base import Encoder, register_arch
from ssl4rl.errors import UserError

# What a model that does not fit an input size raises: conv shape errors, timm's size asserts.
_SIZE_ERRORS = (RuntimeError, AssertionError, ValueError)


class TimmBackbone(Encoder):
    """Shared body of encoders wrapping a timm model (``TimmEncoder``, ``ResNetEncoder``).

    Runs the model once on an ``image_size`` input to learn ``feature_dim`` and ``map_dim``.
    """

    def __init__(self, image_size: int, model: nn.Module, model_name: str, **norm: Any) -> None:
        super().__init__(image_size, **norm)
        self.model_name = model_name
        self.model = model
        was_training = model.training
        model.eval()  # batch norm with one sample and no running stats update
        try:
            with torch.no_grad():
                probe = torch.zeros(1, 3, self.image_size, self.image_size)
                self.feature_dim = self.forward_features(probe).shape[1]
                self.map_dim = self.forward_map(probe).shape[1]
        except _SIZE_ERRORS as e:
            first = str(e).strip().split("\n")[0][:200]
            raise UserError(
                f"timm model '{model_name}' does not run on {image_size}x{image_size} images ({first}); "
                "choose another image_size"
            ) from None
        finally:
            model.train(was_training)

    def runs_at(self, size: int) -> bool:
        """Whether the model accepts (size x size) inputs (checked in eval mode, no grad)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.forward_map(torch.zeros(1, 3, size, size, device=self.mean.device))
            return True
        except (*_SIZE_ERRORS, UserError):
            return False
        finally:
            self.model.train(was_training)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_features(x)
        if out.ndim == 4:
            return out.permute(0, 3, 1, 2) if getattr(self.model, "output_fmt", "NCHW") == "NHWC" else out
        if out.ndim != 3:
            raise UserError(f"timm model '{self.model_name}' gives {out.ndim}-D features, not a map or tokens")
        tokens = out[:, getattr(self.model, "num_prefix_tokens", 0) :]
        n, length, dim = tokens.shape
        side = math.isqrt(length)
        if side * side != length:
            raise UserError(
                f"timm model '{self.model_name}' gives {length} patch tokens, not a square grid; use square inputs"
            )
        return tokens.transpose(1, 2).reshape(n, dim, side, side)


def create_timm_model(model_name: str, model_kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` without weights or classifier, ``dynamic_img_size=True`` where accepted."""
    if not timm.is_model(model_name):
        raise UserError(f"unknown timm model '{model_name}'; find valid names with timm.list_models('pattern*')")
    if "pretrained" in model_kwargs:
        raise UserError("drop 'pretrained' from model_kwargs: ssl4rl builds timm models without downloaded weights")
    kwargs = {"num_classes": 0, **model_kwargs}
    try:
        try:
            return timm.create_model(model_name, pretrained=False, **{"dynamic_img_size": True, **kwargs})
        except TypeError as e:
            if "dynamic_img_size" in model_kwargs or "dynamic_img_size" not in str(e):
                raise
            return timm.create_model(model_name, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise UserError(f"bad model_kwargs for timm model '{model_name}': {str(e).splitlines()[0]}") from None


@register_arch
class TimmEncoder(TimmBackbone):
    """Any timm model by name, randomly initialised (``pretrained=False`` always).

    ``dynamic_size`` is True when the model also runs on half-size inputs (conv
    nets, ViTs built with ``dynamic_img_size``).
    """

    arch = "timm"

    def __init__(
        self,
        image_size: int = 64,
        model_name: str = "resnet18",
        model_kwargs: dict[str, Any] | None = None,
        **norm: Any,
    ) -> None:
        kwargs = dict(model_kwargs or {})
        super().__init__(image_size, create_timm_model(model_name, kwargs), model_name, **norm)
        self.model_kwargs = kwargs
        self.dynamic_size = self.runs_at(max(1, self.image_size // 2))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model_name": self.model_name, "model_kwargs": dict(self.model_kwargs)}
