"""The small shared base every SSL method builds on.

A method is a short file: a ``Config`` dataclass (its recipe and hyper-parameters, registered
as the Hydra structured config ``method=<name>``) and a ``Method`` subclass that

- builds its own inputs from the raw uint8 ``Batch`` (views, crops, rotations, tiles, masks)
  with ``ssl4rl.augment`` on the training device, in [0, 1], normalising last (``embed``);
- returns ``(loss, logs)`` from ``training_step(batch, step)``; logs are tensors (no host sync);
- updates EMA teachers, queues, banks, centres and prototypes only in ``after_step`` (validation
  calls ``training_step`` in eval mode under ``no_grad`` and never calls ``after_step``);
- says which encoder it exports and which parameters get weight decay or their own lr.

All state that must survive a resume lives in parameters and buffers (the ``state_dict``).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ssl4rl.augment import ViewAug, apply_view
from ssl4rl.encoders import Encoder
from ssl4rl.fields import setting, validate
from ssl4rl.optim import OPTIMIZERS

if TYPE_CHECKING:
    from ssl4rl.worldmodels import WorldModel


def _method_names() -> list[str]:
    from ssl4rl.methods import METHODS

    return sorted(METHODS)


MAX_WIDTH = 65536  # the widest hidden, projection or output layer a method may ask for
MAX_CHANNELS = 4096  # the widest convolution or transformer layer a method may ask for


@dataclass
class MethodConfig:
    """Fields every method has: its name and its optimisation recipe (scaled for 32-84 px)."""

    name: str = setting("?", choices=_method_names)
    batch_size: int = setting(128, ge=1, le=1_000_000)
    lr: float = setting(1e-3, gt=0)
    optimizer: str = setting("adamw", choices=OPTIMIZERS)
    weight_decay: float = setting(0.05, ge=0)
    momentum: float = setting(0.9, ge=0, lt=1)  # sgd / lars momentum
    warmup: int = setting(100, ge=0)  # optimizer steps of linear warm-up before the cosine decay
    lars_eta: float = setting(1e-3, gt=0, le=1)  # LARS trust coefficient (SimCLR, BYOL, Barlow Twins)
    # >0: ``lr`` is given for this many images and scaled by batch_size / it
    lr_reference_batch: int = setting(0, ge=0, le=1_000_000)


def recipe(name: str, default: Any, base: type = MethodConfig) -> Any:
    """A method's own default for field ``name`` of ``base``, keeping the range ``base`` declares."""
    inherited = next(f for f in dataclasses.fields(base) if f.name == name)
    return dataclasses.field(default=default, metadata=inherited.metadata)


@dataclass
class Batch:
    """A training batch on the device. ``images``: uint8 (B,3,H,W); ``index``: int64 (B,) sample
    ids in the source (NPID, DeepCluster); ``positive``: uint8 (B,3,H,W) frames k steps later in
    the same episode when ``data.positive=temporal``; ``labels``: int64 (B,) when the source has them;
    ``actions``: float32 (B, A), the action taken between ``images`` and ``positive`` (temporal
    positives with k=1 from episodes that record actions)."""

    images: torch.Tensor
    index: torch.Tensor
    positive: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    actions: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)
        return Batch(move(self.images), move(self.index), move(self.positive), move(self.labels), move(self.actions))


@dataclass
class MethodContext:
    """What a method may know about its run: the seeded generator for its randomness, the step
    budget (schedules), the number of training samples (memory banks), the batch size,
    ``all_batches()``, which yields every training sample once, in order, unaugmented (DeepCluster),
    and the actions batches carry (transition methods)."""

    generator: torch.Generator = field(default_factory=torch.Generator)
    total_steps: int = 1000
    num_samples: int = 0
    batch_size: int = 128
    all_batches: Callable[[], Iterator[Batch]] | None = None
    action_dim: int = 0  # size of the actions batches carry (0: none)
    discrete_actions: bool = False  # every action is one-hot (block pushing), not a continuous vector


class Method(nn.Module, abc.ABC):
    """Base class of SSL methods: an encoder plus the heads, teachers and state a method trains with."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    needs_arch: ClassVar[tuple[str, ...]] = ()  # architectures it requires (empty: any)
    # contrastive | non-contrastive | clustering | generative | pretext (the contract test checks
    # that non-contrastive and clustering methods do not collapse)
    family: ClassVar[str] = "contrastive"
    # True when the method's state is indexed by training sample (memory bank, pseudo-labels): its
    # held-out metrics are then computed on a fixed training batch
    indexes_train_set: ClassVar[bool] = False
    # True when the method learns from transitions (frame t, action t, frame t+1), e.g. C-SWM: the loop
    # then draws temporal positives with k=1 whose batches carry the action, from env episodes only
    needs_transitions: ClassVar[bool] = False
    # True when the method learns from a positive pair (``two_views`` / ``pair``): two augmentations of a frame, or a
    # frame and its temporal positive; such a method can be an agent's auxiliary loss (``aux=<name>``)
    pairs: ClassVar[bool] = False

    def __init__(self, encoder: Encoder, cfg: MethodConfig, ctx: MethodContext) -> None:
        super().__init__()
        validate(cfg, "method.")
        self.encoder = encoder
        self.cfg = cfg
        self.ctx = ctx
        self.generator = ctx.generator

    # ------------------------------------------------------------------ the interface
    @abc.abstractmethod
    def training_step(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One batch -> (loss, tensors to log, including ``loss``). Must not change buffers
        (``after_step`` does), so validation leaves the method's state alone."""

    def after_step(self, step: int) -> None:
        """Called after each optimizer step (``step`` counts finished steps): EMA teachers,
        momentum schedules, queues, memory banks, centres, prototypes. Nothing by default."""

    def on_train_start(self) -> None:
        """Called once before the first step of a run (also on resume). Nothing by default."""

    def export_encoder(self) -> Encoder:
        """The encoder saved at the end (the student by default; a method may export its teacher)."""
        return self.encoder

    @classmethod
    def own_encoder(cls, cfg: MethodConfig) -> Encoder | None:
        """The encoder a method builds from its own config in place of ``backbone=`` (C-SWM's object
        extractor), or None: the run's backbone (the default)."""
        return None

    def export_world_model(self) -> WorldModel | None:
        """A world model the loop saves next to the encoder (``out/worldmodel``), or None (the default)."""
        return None

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: weight decay on weights, none on norms and biases (as MAE's code).

        A group may carry ``lr_scale`` (multiplies the lr) and ``fixed_lr=True`` (no schedule). With
        ``lr_reference_batch`` set, every group's lr is scaled linearly by ``batch_size / lr_reference_batch``.
        """
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "token" in name else decay).append(p)
        scale = self.cfg.batch_size / self.cfg.lr_reference_batch if self.cfg.lr_reference_batch > 0 else 1.0
        return [
            {"params": decay, "weight_decay": self.cfg.weight_decay, "lr_scale": scale},
            {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "lr_scale": scale},
        ]

    def embedding(self, x01: torch.Tensor) -> torch.Tensor:
        """The embedding the loss works on for one view (the no-collapse check reads it): the
        projector's output when the method has a ``projector``, else the encoder's features."""
        features = self.embed(x01)
        projector = getattr(self, "projector", None)
        return projector(features) if isinstance(projector, nn.Module) else features

    def save_figures(self, batch: Batch, folder: Path, step: int) -> list[Path]:
        """Write method-specific figures at a checkpoint; returns their paths (none by default)."""
        return []

    def hparams(self) -> dict[str, Any]:
        """The method's configuration, recorded with the saved encoder."""
        return dataclasses.asdict(self.cfg)

    # ------------------------------------------------------------------ helpers for subclasses
    def embed(self, x01: torch.Tensor, encoder: Encoder | None = None) -> torch.Tensor:
        """Float images in [0, 1] -> the encoder's pooled features (normalising last; resized to
        the encoder's size first if it cannot take other sizes)."""
        enc = encoder or self.encoder
        return enc.forward_features(enc.normalize(self.fit_size(x01, enc)))

    def feature_map(self, x01: torch.Tensor, encoder: Encoder | None = None) -> torch.Tensor:
        """Float images in [0, 1] -> the encoder's spatial map (N, C, h, w)."""
        enc = encoder or self.encoder
        return enc.forward_map(enc.normalize(self.fit_size(x01, enc)))

    def two_views(self, batch: Batch, aug: ViewAug) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented float views of the batch's positive pair (see ``pair``)."""
        x, y = self.pair(batch)
        return apply_view(x, aug, self.generator), apply_view(y, aug, self.generator)

    def fit_size(self, x: torch.Tensor, encoder: Encoder | None = None) -> torch.Tensor:
        """Resize views to the encoder's ``image_size`` unless it accepts other sizes (``dynamic_size``)."""
        enc = encoder or self.encoder
        if enc.dynamic_size or x.shape[-1] == enc.image_size:
            return x
        return torch.nn.functional.interpolate(x, size=(enc.image_size, enc.image_size), mode="bilinear", align_corners=False)

    @staticmethod
    def pair(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sources of a positive pair, as float [0, 1]: the image twice, or the image and
        its temporal positive (``data.positive=temporal``). Each is then augmented independently."""
        x = batch.images.float() / 255
        y = batch.positive.float() / 255 if batch.positive is not None else x
        return x, y
