"""The encoder contract that pretraining, agents, world models and evaluation share.

- input: uint8 frames ``(N, 3, H, W)`` (any H, W: they are resized to ``image_size``)
- output: float features ``(N, feature_dim)``; ``forward_map`` also gives the spatial
  feature map ``(N, map_dim, h, w)`` (ViT patch tokens as a grid, conv activations)
- training: methods augment float images in [0, 1], then call ``normalize`` and
  ``forward_features`` / ``forward_map``. Encoders with ``dynamic_size`` accept other
  input sizes (small crops); others must get ``image_size``.
- save: ``save_encoder(enc, dir)`` writes ``encoder.safetensors`` and
  ``encoder.json`` (architecture + kwargs, image size, normalisation, method)
- load: ``load_encoder(dir)`` rebuilds the module and loads the weights.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ssl4rl.errors import UserError
from ssl4rl.fields import build, rule_of, setting
from ssl4rl.utils import atomic_path, load_weights, read_json, write_json

FORMAT = "ssl4rl.encoder/1"
MAX_TOKENS = 4096  # patches a transformer may cut an image_size input into
WEIGHTS, META = "encoder.safetensors", "encoder.json"


def _rgb(value: Any) -> str | None:
    """The problem with a per-channel setting, or None: it must be 3 numbers, one per RGB channel."""
    if not isinstance(value, (list, tuple)):
        return None  # one of the numbers (their bounds are declared beside the setting)
    if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "must be 3 numbers, one per RGB channel, e.g. [0.5,0.5,0.5]"
    return None


@dataclass
class EncoderConfig:
    """What every architecture's constructor takes: the input size and the per-channel normalisation of
    frames scaled to [0, 1]. Each architecture's ``Config`` adds its own kwargs with their ranges."""

    image_size: int = setting(64, ge=8, le=1024)
    mean: list[float] = setting(factory=lambda: [0.5, 0.5, 0.5], ge=0, le=1, check=_rgb)
    std: list[float] = setting(factory=lambda: [0.25, 0.25, 0.25], gt=0, le=1, check=_rgb)


class Encoder(nn.Module, abc.ABC):
    """Base class: maps uint8 frames (N,3,H,W) to features (N, feature_dim).

    Subclasses set ``arch``, ``feature_dim`` and implement ``forward_features``
    on normalised float images of size ``image_size``; ``config()`` returns
    the kwargs that rebuild them.
    """

    arch: ClassVar[str]
    Config: ClassVar[type[EncoderConfig] | None] = None  # the constructor's kwargs with their ranges (check_backbone)
    dynamic_size: ClassVar[bool] = False  # True: forward_* accept inputs of other sizes
    feature_dim: int
    map_dim: int

    def __init__(
        self,
        image_size: int,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
    ) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def config(self) -> dict[str, Any]:
        """Constructor kwargs that rebuild this encoder (saved in the metadata)."""
        return {"image_size": self.image_size, "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def set_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the per-channel mean/std applied to frames scaled to [0, 1]."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] (N,3,H,W), any size -> normalised (no resize)."""
        return (x01 - self.mean) / self.std

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N,3,H,W) -> normalised float (N,3,image_size,image_size)."""
        x = frames.to(self.mean.device, torch.float32, non_blocking=True) / 255.0  # never in place
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return self.normalize(x)

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float images (N,3,S,S) -> features (N, feature_dim)."""

    @abc.abstractmethod
    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float images (N,3,S,S) -> spatial feature map (N, map_dim, h, w)."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N,3,H,W) -> features (N, feature_dim)."""
        return self.forward_features(self.preprocess(frames))

    @torch.no_grad()
    def encode(self, frames: torch.Tensor | np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Features of many frames in eval mode, in batches, returned on the CPU."""
        was_training = self.training
        self.eval()
        frames = torch.as_tensor(frames)
        out = [self(chunk).float().cpu() for chunk in frames.split(batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.feature_dim)


ARCHS: dict[str, type[Encoder]] = {}


def register_arch(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator adding an encoder architecture to ``ARCHS``."""
    ARCHS[cls.arch] = cls
    return cls


def check_backbone(arch: str, kwargs: dict[str, Any], where: str = "backbone.") -> None:
    """Refuse, with one UserError line, an unknown architecture, an unknown kwarg or a value outside the range
    the architecture's ``Config`` declares; ``where`` prefixes the keys (e.g. ``'backbone.'``)."""
    if arch not in ARCHS:
        import ssl4rl.worldmodels  # noqa: F401  (world-model encoders such as C-SWM's 'cswm' register there)
    if arch not in ARCHS:
        raise UserError(f"unknown encoder architecture '{arch}'; valid names: {', '.join(sorted(ARCHS))}")
    config = ARCHS[arch].Config
    if config is None:  # an architecture without declared ranges: every number within plain bounds
        for key, value in kwargs.items():
            limit = 1024 if key == "image_size" else 8192
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value <= limit:
                raise UserError(f"{where}{key}={value}: must be >= 0 and <= {limit}")
        return
    try:
        build(config, dict(kwargs), where)
    except UserError as e:  # a cross-field check() names bare keys: prefix the first one
        if not where or str(e).startswith((where, "unknown setting")):
            raise
        raise UserError(f"{where}{e}") from None


def check_backbone_config(backbone: Any, where: str = "backbone.") -> None:
    """``check_backbone`` on a whole backbone config (its ``arch`` key and the architecture's options)."""
    options = dict(backbone)
    arch = options.pop("arch", None)
    if not isinstance(arch, str):
        raise UserError(f"{where}arch={arch}: must name an architecture, e.g. conv or vit_tiny")
    check_backbone(arch, options, where)


def build_encoder(arch: str, **kwargs: Any) -> Encoder:
    """Instantiate a registered architecture, e.g. ``build_encoder('vit', image_size=64)``, its kwargs
    checked first (``check_backbone``)."""
    check_backbone(arch, kwargs)
    try:
        return ARCHS[arch](**kwargs)
    except TypeError as e:
        raise UserError(f"bad options for encoder architecture '{arch}': {e}") from None


def save_encoder(encoder: Encoder, path: str | Path, method: str = "none", **extra: Any) -> Path:
    """Save weights (safetensors) and metadata (JSON) into folder ``path``; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    meta = {
        "format": FORMAT,
        "arch": encoder.arch,
        "kwargs": encoder.config(),
        "image_size": encoder.image_size,
        "feature_dim": encoder.feature_dim,
        "input": "uint8 (N,3,H,W) RGB, resized to image_size",
        "normalization": {
            "scale": 1 / 255,
            "mean": encoder.mean.flatten().tolist(),
            "std": encoder.std.flatten().tolist(),
        },
        "method": method,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        **extra,
    }
    write_json(path / META, meta)
    return path


def encoder_meta(path: str | Path) -> dict[str, Any]:
    """Read and check an encoder's metadata (``path`` is the folder or one of its files)."""
    folder = _folder(path)
    meta = read_json(folder / META)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{folder / META}: not an ssl4rl encoder metadata file (format != {FORMAT})")
    for key, kind in (("arch", str), ("kwargs", dict), ("image_size", int), ("feature_dim", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise UserError(f"{folder / META}: '{key}' must be a {kind.__name__}, got {meta.get(key)!r}")
    norm = meta.get("normalization")
    if not isinstance(norm, dict):
        raise UserError(f"{folder / META}: 'normalization' must be a mapping with 'mean' and 'std' (3 numbers each), "
                        f"got {str(norm)[:80]}; not an encoder ssl4rl wrote")
    for f in dataclasses.fields(EncoderConfig):
        if f.name in ("mean", "std"):
            value = norm.get(f.name)
            problem = rule_of(f).problem(value) if isinstance(value, list) else "must be a list of 3 numbers"
            if problem:
                raise UserError(f"{folder / META}: normalization.{f.name}={str(value)[:80]}: {problem}")
    return meta


MAX_PARAMS = 2_000_000_000  # an encoder read from a file may have at most this many parameters


def _check_size(meta: dict[str, Any], where: Path) -> None:
    """Refuse metadata describing an encoder that cannot be built or is too large, without allocating it:
    the kwargs within their declared ranges first (``check_backbone``), then the parameters counted on the
    meta device."""
    check_backbone(meta["arch"], meta["kwargs"], f"{where}: kwargs.")
    try:
        with torch.device("meta"):
            probe = ARCHS[meta["arch"]](**meta["kwargs"])
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise UserError(f"{where}: describes an encoder that cannot be built ({type(e).__name__}: {str(e)[:200]})") from None
    n = sum(p.numel() for p in probe.parameters()) + sum(b.numel() for b in probe.buffers())
    if n > MAX_PARAMS:
        raise UserError(f"{where}: describes an encoder of {n:,} parameters, more than {MAX_PARAMS:,}; not a file ssl4rl wrote")


def load_encoder(path: str | Path, device: str | torch.device = "cpu", arch: str | None = None) -> Encoder:
    """Rebuild an encoder saved by ``save_encoder``; ``arch`` optionally asserts its architecture."""
    folder = _folder(path)
    meta = encoder_meta(folder)
    if arch is not None and meta["arch"] != arch:
        raise UserError(f"{folder / META}: encoder architecture is '{meta['arch']}', expected '{arch}'")
    _check_size(meta, folder / META)
    encoder = ARCHS[meta["arch"]](**meta["kwargs"])
    load_weights(encoder, folder / WEIGHTS, f"architecture '{meta['arch']}'")
    return encoder.to(device).eval()


def random_like(path: str | Path, seed: int = 0) -> Encoder:
    """An untrained encoder (seeded) with the architecture and input normalisation of the one saved
    at ``path``: the random-init baseline that matches a pretrained encoder."""
    meta = encoder_meta(path)
    _check_size(meta, _folder(path) / META)
    torch.manual_seed(seed)
    encoder = ARCHS[meta["arch"]](**meta["kwargs"])
    encoder.set_normalization(meta["normalization"]["mean"], meta["normalization"]["std"])
    return encoder.eval()


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() or path.suffix in (".json", ".safetensors"):
        path = path.parent
    if not path.exists():
        raise UserError(f"{path}: encoder not found (expected a folder with {META} and {WEIGHTS})")
    return path
