"""World models are saved like encoders: ``model.safetensors`` (weights) plus ``model.json``
(format, kind, the constructor kwargs that rebuild the module, and free metadata), loadable by
path with ``load_world_model(folder)``, never pickled.

A world model is an ``nn.Module`` subclass of ``WorldModel`` with a class attribute ``kind``,
registered with ``@register_world_model``, whose ``config()`` returns JSON-able constructor kwargs.
A model that contains an ssl4rl encoder puts ``encoder_spec(encoder)`` in its kwargs and rebuilds it
with ``encoder_from_spec(spec)``; the encoder's weights are part of the model's state dict.
"""

from __future__ import annotations

import abc

import datetime
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_file
from torch import nn

from ssl4rl.encoders import Encoder, build_encoder
from ssl4rl.errors import UserError
from ssl4rl.utils import atomic_path, load_weights, read_json, write_json

FORMAT = "ssl4rl.worldmodel/1"
WEIGHTS, META = "model.safetensors", "model.json"
MAX_PARAMS = 2_000_000_000


class WorldModel(nn.Module, abc.ABC):
    """Base class of saved world models (C-SWM, RSSM, VAE, MDN-RNN, controllers)."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able constructor kwargs that rebuild this model."""


WORLD_MODELS: dict[str, type[WorldModel]] = {}


def register_world_model(cls: type[WorldModel]) -> type[WorldModel]:
    """Class decorator adding a world-model kind to ``WORLD_MODELS``."""
    WORLD_MODELS[cls.kind] = cls
    return cls


def encoder_spec(encoder: Encoder) -> dict[str, Any]:
    """The JSON-able description that rebuilds ``encoder`` (weights travel in the owner's state dict)."""
    return {"arch": encoder.arch, "kwargs": encoder.config()}


def encoder_from_spec(spec: dict[str, Any]) -> Encoder:
    """Rebuild an encoder described by ``encoder_spec`` (untrained until the owner's weights are loaded)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str) or not isinstance(spec.get("kwargs"), dict):
        raise UserError(f"encoder spec {repr(spec)[:100]}: expected {{'arch': str, 'kwargs': dict}}")
    return build_encoder(spec["arch"], **spec["kwargs"])


def save_world_model(model: WorldModel, folder: str | Path, **meta: Any) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/model.json`` atomically; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(folder / META, {
        "format": FORMAT, "kind": model.kind, "kwargs": model.config(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "created": datetime.datetime.now().isoformat(timespec="seconds"), **meta,
    })
    return folder


def world_model_meta(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/model.json``."""
    path = Path(folder) / META
    if not path.exists():
        raise UserError(f"{folder}: world model not found (expected a folder with {META} and {WEIGHTS})")
    meta = read_json(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssl4rl world model metadata file (format != {FORMAT})")
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in WORLD_MODELS:
        raise UserError(f"{path}: unknown world model kind {repr(kind)[:100]}; valid: {', '.join(sorted(WORLD_MODELS))}")
    if not isinstance(meta.get("kwargs"), dict):
        raise UserError(f"{path}: 'kwargs' must be a dict, got {repr(meta.get('kwargs'))[:100]}")
    return meta


def load_world_model(folder: str | Path, device: str | torch.device = "cpu", kind: str | None = None) -> WorldModel:
    """Rebuild a world model saved by ``save_world_model``; ``kind`` optionally asserts what it is."""
    import ssl4rl.worldmodels  # noqa: F401  (registers every kind)

    folder = Path(folder)
    meta = world_model_meta(folder)
    if kind is not None and meta["kind"] != kind:
        raise UserError(f"{folder / META}: a '{meta['kind']}' world model, expected '{kind}'")
    cls = WORLD_MODELS[meta["kind"]]
    try:
        with torch.device("meta"):
            probe = cls(**meta["kwargs"])
    except (TypeError, ValueError, AssertionError, RuntimeError, UserError) as e:
        raise UserError(f"{folder / META}: describes a model that cannot be built ({type(e).__name__}: {str(e)[:200]})") from None
    if sum(p.numel() for p in probe.parameters()) > MAX_PARAMS:
        raise UserError(f"{folder / META}: describes a model of more than {MAX_PARAMS:,} parameters; not a file ssl4rl wrote")
    model = cls(**meta["kwargs"])
    load_weights(model, folder / WEIGHTS, f"the '{meta['kind']}' model")
    return model.to(device).eval()
