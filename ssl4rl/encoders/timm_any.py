"""Any timm model as an encoder (arch ``timm``), never with pretrained weights.

Features are the model's pooled pre-logits (``forward_head(pre_logits=True)``
after ``forward_features``); the map is the ``forward_features`` output as
(N, C, h, w): conv maps as they are (NHWC models permuted), ViT tokens without
the prefix tokens reshaped to a square grid. ViTs are built with
``dynamic_img_size=True`` when the model accepts it. ``model_kwargs`` may hold only the plain
architecture options of ``MODEL_KWARGS`` (none that makes timm read a file or the network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn

from ssl4rl.encoders.base import MAX_TOKENS, Encoder, EncoderConfig, register_arch
from ssl4rl.errors import UserError
from ssl4rl.fields import Rule, setting, validate

# What a model that does not fit an input size raises: conv shape errors, timm's size asserts.
_SIZE_ERRORS = (RuntimeError, AssertionError, ValueError)

_RATE = Rule(ge=0, lt=1)
# The timm.create_model options an encoder may set, each with its type and range: plain architecture
# numbers and switches only. Anything else (checkpoint_path, pretrained_cfg, cache_dir, in_chans...) is refused.
MODEL_KWARGS: dict[str, tuple[type, Rule]] = {
    "drop_rate": (float, _RATE),
    "drop_path_rate": (float, _RATE),
    "attn_drop_rate": (float, _RATE),
    "proj_drop_rate": (float, _RATE),
    "pos_drop_rate": (float, _RATE),
    "global_pool": (str, Rule(choices=("", "avg", "max", "avgmax", "catavgmax", "token", "map"))),
    "img_size": (int, Rule(ge=8, le=1024)),
    "patch_size": (int, Rule(ge=1, le=1024)),
    "embed_dim": (int, Rule(ge=1, le=8192)),
    "depth": (int, Rule(ge=1, le=64)),
    "num_heads": (int, Rule(ge=1, le=256)),
    "mlp_ratio": (float, Rule(gt=0, le=16)),
    "init_values": (float, Rule(ge=0, le=1)),
    "reg_tokens": (int, Rule(ge=0, le=64)),
    "output_stride": (int, Rule(check=lambda v: None if v in (8, 16, 32) else "must be one of: 8, 16, 32")),
    "qkv_bias": (bool, Rule()),
    "class_token": (bool, Rule()),
    "no_embed_class": (bool, Rule()),
    "dynamic_img_size": (bool, Rule()),
}
_KINDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}


def model_kwargs_problem(model_name: str, model_kwargs: Any) -> str | None:
    """What is wrong with ``model_kwargs`` for timm model ``model_name`` (in one line, naming the key), or None."""
    if not isinstance(model_kwargs, dict):
        return f"model_kwargs={str(model_kwargs)[:80]}: must be a mapping of timm options, e.g. {{drop_path_rate: 0.1}}"
    for key, value in model_kwargs.items():
        if key == "pretrained":
            return "model_kwargs.pretrained: drop 'pretrained'; ssl4rl builds timm models without downloaded weights"
        if key not in MODEL_KWARGS:
            return (f"model_kwargs.{key}={str(value)[:80]}: not an option ssl4rl passes to timm model '{model_name}'; "
                    f"allowed: {', '.join(MODEL_KWARGS)}")
        kind, rule = MODEL_KWARGS[key]
        ok = isinstance(value, bool) if kind is bool else not isinstance(value, bool) and (
            isinstance(value, (int, float)) if kind is float else isinstance(value, kind))
        problem = rule.problem(value) if ok else f"must be {_KINDS[kind]}"
        if problem:
            return f"model_kwargs.{key}={str(value)[:80]}: {problem}"
    return None


def _timm_model(name: Any) -> str | None:
    return None if timm.is_model(name) else "unknown timm model; find valid names with timm.list_models('pattern*')"


@dataclass
class TimmConfig(EncoderConfig):
    """``TimmEncoder``'s kwargs."""

    image_size: int = setting(64, ge=8, le=1024)
    model_name: str = setting("resnet18", check=_timm_model)
    model_kwargs: dict[str, Any] | None = setting(None)  # the options of MODEL_KWARGS only

    def check(self) -> None:
        """Only the allowed ``model_kwargs``, each within its range; at most ``MAX_TOKENS`` patches."""
        kwargs = {} if self.model_kwargs is None else self.model_kwargs
        problem = model_kwargs_problem(self.model_name, kwargs)
        if problem:
            raise UserError(problem)
        patch = kwargs.get("patch_size")
        for key, size in (("image_size", self.image_size), ("model_kwargs.img_size", kwargs.get("img_size"))):
            if patch and size and (size // patch) ** 2 > MAX_TOKENS:
                raise UserError(f"model_kwargs.patch_size={patch} cuts {key}={size} into {(size // patch) ** 2} patches, "
                                f"more than {MAX_TOKENS}; use larger patches")


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
    """``timm.create_model`` without weights or classifier, ``dynamic_img_size=True`` where accepted; only the
    ``model_kwargs`` of ``MODEL_KWARGS``."""
    problem = model_kwargs_problem(model_name, model_kwargs)  # the gate before timm: no option that reads files
    if problem:
        raise UserError(problem)
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
    Config = TimmConfig

    def __init__(
        self,
        image_size: int = 64,
        model_name: str = "resnet18",
        model_kwargs: dict[str, Any] | None = None,
        **norm: Any,
    ) -> None:
        validate(TimmConfig(image_size, **norm, model_name=model_name, model_kwargs=model_kwargs))
        kwargs = dict(model_kwargs or {})
        super().__init__(image_size, create_timm_model(model_name, kwargs), model_name, **norm)
        self.model_kwargs = kwargs
        self.dynamic_size = self.runs_at(max(1, self.image_size // 2))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model_name": self.model_name, "model_kwargs": dict(self.model_kwargs)}
